/* A hostile container's half of the filesystem-race tests (test_fs_race.py): swaps two
 * names with renameat2(RENAME_EXCHANGE) in a tight loop, for at most SECONDS, so that
 * the daemon, walking the container's filesystem, keeps finding a symlink where it has
 * just seen a regular file or a directory.  Built by the test: gcc -static -O2. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s A B SECONDS\n", argv[0]);
        return 2;
    }
    time_t end = time(NULL) + atol(argv[3]);
    for (unsigned long n = 0;; n++) {
        if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE)) {
            perror("renameat2");
            return 1;
        }
        if ((n & 0xfff) == 0 && time(NULL) > end)
            return 0;
    }
}
