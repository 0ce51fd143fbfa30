import os
import subprocess


def test_busybox_rootfs_runs_sh_under_chroot(busybox_rootfs):
    out = subprocess.run(["chroot", str(busybox_rootfs), "/bin/sh", "-c", "echo hi; ls /bin /usr/bin /sbin | wc -l"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "hi"
    assert int(out[1]) > 100


def test_bash_rootfs_has_dynamic_bash_that_runs(bash_rootfs):
    assert not os.path.islink(bash_rootfs / "bin/bash")
    out = subprocess.run(["chroot", str(bash_rootfs), "/bin/bash", "-c", "echo $BASH_VERSION"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip()
