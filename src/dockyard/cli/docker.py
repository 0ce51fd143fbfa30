"""Docker-compatible client commands (`dockyard images`, `dockyard version`, ...).

Global options come first (``-H``, ``--tls*``, ``-D``, ``-l``), then a command.
Commands live in small modules imported on demand, and only talk to the
daemon through :class:`dockyard.client.Client`.
"""

from __future__ import annotations

import os
import sys

USAGE = """Usage:  dockyard [OPTIONS] COMMAND

A container engine that speaks Docker's API

Common Commands:
  run         Create and run a new container from an image
  build       Build an image from a Dockerfile
  exec        Execute a command in a running container
  ps          List containers
  images      List images
  version     Show the Dockyard version information
  info        Display system-wide information

Management Commands:
  builder     Manage builds
  container   Manage containers
  image       Manage images
  network     Manage networks
  system      Manage Dockyard
  volume      Manage volumes

Commands:
  attach      Attach local standard input, output, and error streams to a running container
  commit      Create a new image from a container's changes
  cp          Copy files/folders between a container and the local filesystem
  create      Create a new container
  diff        Inspect changes to files or directories on a container's filesystem
  events      Get real time events from the server
  export      Export a container's filesystem as a tar archive
  history     Show the history of an image
  import      Import the contents from a tarball to create a filesystem image
  inspect     Return low-level information on Dockyard objects
  kill        Kill one or more running containers
  load        Load an image from a tar archive or STDIN
  login       Log in to a registry
  logout      Log out from a registry
  logs        Fetch the logs of a container
  pause       Pause all processes within one or more containers
  port        List port mappings or a specific mapping for the container
  pull        Download an image from a registry
  push        Upload an image to a registry
  rename      Rename a container
  restart     Restart one or more containers
  rm          Remove one or more containers
  rmi         Remove one or more images
  save        Save one or more images to a tar archive (streamed to STDOUT by default)
  search      Search a registry for images
  start       Start one or more stopped containers
  stats       Display a live stream of container(s) resource usage statistics
  stop        Stop one or more running containers
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
  top         Display the running processes of a container
  unpause     Unpause all processes within one or more containers
  update      Update configuration of one or more containers
  wait        Block until one or more containers stop, then print their exit codes

Pieces:
  daemon      Run the Dockyard daemon (Docker Engine API server)
  runtime     The OCI runtime (runc-compatible), also installed as dockyard-runc
  registry    Run the OCI distribution registry

Global Options:
  -D, --debug              Enable debug mode
  -H, --host string        Daemon socket to connect to (default unix:///run/dockyard.sock)
  -l, --log-level string   Set the logging level (default "info")
      --tls                Use TLS; implied by --tlsverify
      --tlscacert string   Trust certs signed only by this CA
      --tlscert string     Path to TLS certificate file
      --tlskey string      Path to TLS key file
      --tlsverify          Use TLS and verify the remote
  -v, --version            Print version information and quit

Run 'dockyard COMMAND --help' for more information on a command.
"""

# command words -> (module, function)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("version",): ("dockyard.cli.cmd_system", "cmd_version"),
    ("info",): ("dockyard.cli.cmd_system", "cmd_info"),
    ("system", "info"): ("dockyard.cli.cmd_system", "cmd_info"),
    ("events",): ("dockyard.cli.cmd_system", "cmd_events"),
    ("system", "events"): ("dockyard.cli.cmd_system", "cmd_events"),
    ("system", "df"): ("dockyard.cli.cmd_system", "cmd_df"),
    ("volume", "create"): ("dockyard.cli.cmd_volumes", "cmd_volume_create"),
    ("volume", "ls"): ("dockyard.cli.cmd_volumes", "cmd_volume_ls"),
    ("volume", "list"): ("dockyard.cli.cmd_volumes", "cmd_volume_ls"),
    ("volume", "inspect"): ("dockyard.cli.cmd_volumes", "cmd_volume_inspect"),
    ("volume", "rm"): ("dockyard.cli.cmd_volumes", "cmd_volume_rm"),
    ("volume", "remove"): ("dockyard.cli.cmd_volumes", "cmd_volume_rm"),
    ("volume", "prune"): ("dockyard.cli.cmd_volumes", "cmd_volume_prune"),
    ("images",): ("dockyard.cli.cmd_images", "cmd_images"),
    ("image", "ls"): ("dockyard.cli.cmd_images", "cmd_images"),
    ("image", "list"): ("dockyard.cli.cmd_images", "cmd_images"),
    ("inspect",): ("dockyard.cli.cmd_containers", "cmd_inspect"),  # containers, then images
    ("image", "inspect"): ("dockyard.cli.cmd_images", "cmd_image_inspect"),
    ("tag",): ("dockyard.cli.cmd_images", "cmd_tag"),
    ("image", "tag"): ("dockyard.cli.cmd_images", "cmd_tag"),
    ("rmi",): ("dockyard.cli.cmd_images", "cmd_rmi"),
    ("image", "rm"): ("dockyard.cli.cmd_images", "cmd_rmi"),
    ("image", "remove"): ("dockyard.cli.cmd_images", "cmd_rmi"),
    ("history",): ("dockyard.cli.cmd_images", "cmd_history"),
    ("image", "history"): ("dockyard.cli.cmd_images", "cmd_history"),
    ("import",): ("dockyard.cli.cmd_images", "cmd_import"),
    ("image", "import"): ("dockyard.cli.cmd_images", "cmd_import"),
    ("save",): ("dockyard.cli.cmd_images", "cmd_save"),
    ("image", "save"): ("dockyard.cli.cmd_images", "cmd_save"),
    ("load",): ("dockyard.cli.cmd_images", "cmd_load"),
    ("image", "load"): ("dockyard.cli.cmd_images", "cmd_load"),
    ("image", "prune"): ("dockyard.cli.cmd_images", "cmd_image_prune"),
    ("pull",): ("dockyard.cli.cmd_distribution", "cmd_pull"),
    ("image", "pull"): ("dockyard.cli.cmd_distribution", "cmd_pull"),
    ("push",): ("dockyard.cli.cmd_distribution", "cmd_push"),
    ("image", "push"): ("dockyard.cli.cmd_distribution", "cmd_push"),
    ("login",): ("dockyard.cli.cmd_distribution", "cmd_login"),
    ("logout",): ("dockyard.cli.cmd_distribution", "cmd_logout"),
    ("search",): ("dockyard.cli.cmd_distribution", "cmd_search"),
    # containers (cmd_run: processes and attaching; cmd_containers: the rest)
    ("create",): ("dockyard.cli.cmd_run", "cmd_create"),
    ("container", "create"): ("dockyard.cli.cmd_run", "cmd_container_create"),
    ("run",): ("dockyard.cli.cmd_run", "cmd_run"),
    ("container", "run"): ("dockyard.cli.cmd_run", "cmd_container_run"),
    ("start",): ("dockyard.cli.cmd_run", "cmd_start"),
    ("container", "start"): ("dockyard.cli.cmd_run", "cmd_container_start"),
    ("attach",): ("dockyard.cli.cmd_run", "cmd_attach"),
    ("container", "attach"): ("dockyard.cli.cmd_run", "cmd_container_attach"),
    ("exec",): ("dockyard.cli.cmd_run", "cmd_exec"),
    ("container", "exec"): ("dockyard.cli.cmd_run", "cmd_container_exec"),
    ("stop",): ("dockyard.cli.cmd_containers", "cmd_stop"),
    ("container", "stop"): ("dockyard.cli.cmd_containers", "cmd_container_stop"),
    ("kill",): ("dockyard.cli.cmd_containers", "cmd_kill"),
    ("container", "kill"): ("dockyard.cli.cmd_containers", "cmd_container_kill"),
    ("restart",): ("dockyard.cli.cmd_containers", "cmd_restart"),
    ("container", "restart"): ("dockyard.cli.cmd_containers", "cmd_container_restart"),
    ("rm",): ("dockyard.cli.cmd_containers", "cmd_rm"),
    ("container", "rm"): ("dockyard.cli.cmd_containers", "cmd_container_rm"),
    ("wait",): ("dockyard.cli.cmd_containers", "cmd_wait"),
    ("container", "wait"): ("dockyard.cli.cmd_containers", "cmd_container_wait"),
    ("logs",): ("dockyard.cli.cmd_containers", "cmd_logs"),
    ("container", "logs"): ("dockyard.cli.cmd_containers", "cmd_container_logs"),
    ("top",): ("dockyard.cli.cmd_containers", "cmd_top"),
    ("container", "top"): ("dockyard.cli.cmd_containers", "cmd_container_top"),
    ("pause",): ("dockyard.cli.cmd_containers", "cmd_pause"),
    ("container", "pause"): ("dockyard.cli.cmd_containers", "cmd_container_pause"),
    ("unpause",): ("dockyard.cli.cmd_containers", "cmd_unpause"),
    ("container", "unpause"): ("dockyard.cli.cmd_containers", "cmd_container_unpause"),
    ("rename",): ("dockyard.cli.cmd_containers", "cmd_rename"),
    ("container", "rename"): ("dockyard.cli.cmd_containers", "cmd_container_rename"),
    ("update",): ("dockyard.cli.cmd_containers", "cmd_update"),
    ("container", "update"): ("dockyard.cli.cmd_containers", "cmd_container_update"),
    ("diff",): ("dockyard.cli.cmd_containers", "cmd_diff"),
    ("container", "diff"): ("dockyard.cli.cmd_containers", "cmd_container_diff"),
    ("commit",): ("dockyard.cli.cmd_containers", "cmd_commit"),
    ("container", "commit"): ("dockyard.cli.cmd_containers", "cmd_container_commit"),
    ("export",): ("dockyard.cli.cmd_containers", "cmd_export"),
    ("container", "export"): ("dockyard.cli.cmd_containers", "cmd_container_export"),
    ("stats",): ("dockyard.cli.cmd_containers", "cmd_stats"),
    ("container", "stats"): ("dockyard.cli.cmd_containers", "cmd_container_stats"),
    ("port",): ("dockyard.cli.cmd_containers", "cmd_port"),
    ("container", "port"): ("dockyard.cli.cmd_containers", "cmd_container_port"),
    ("ps",): ("dockyard.cli.cmd_containers", "cmd_ps"),
    ("container", "ls"): ("dockyard.cli.cmd_containers", "cmd_container_ls"),
    ("container", "list"): ("dockyard.cli.cmd_containers", "cmd_container_ls"),
    ("container", "ps"): ("dockyard.cli.cmd_containers", "cmd_container_ls"),
    ("container", "remove"): ("dockyard.cli.cmd_containers", "cmd_container_rm"),
    ("container", "inspect"): ("dockyard.cli.cmd_containers", "cmd_container_inspect"),
    ("container", "prune"): ("dockyard.cli.cmd_containers", "cmd_container_prune"),
    ("cp",): ("dockyard.cli.cmd_cp", "cmd_cp"),
    ("container", "cp"): ("dockyard.cli.cmd_cp", "cmd_cp"),
    ("network", "create"): ("dockyard.cli.cmd_networks", "cmd_network_create"),
    ("network", "ls"): ("dockyard.cli.cmd_networks", "cmd_network_ls"),
    ("network", "list"): ("dockyard.cli.cmd_networks", "cmd_network_ls"),
    ("network", "inspect"): ("dockyard.cli.cmd_networks", "cmd_network_inspect"),
    ("network", "rm"): ("dockyard.cli.cmd_networks", "cmd_network_rm"),
    ("network", "remove"): ("dockyard.cli.cmd_networks", "cmd_network_rm"),
    ("network", "prune"): ("dockyard.cli.cmd_networks", "cmd_network_prune"),
    ("network", "connect"): ("dockyard.cli.cmd_networks", "cmd_network_connect"),
    ("network", "disconnect"): ("dockyard.cli.cmd_networks", "cmd_network_disconnect"),
    ("build",): ("dockyard.cli.cmd_build", "cmd_build"),
    ("image", "build"): ("dockyard.cli.cmd_build", "cmd_build"),
    ("builder", "build"): ("dockyard.cli.cmd_build", "cmd_build"),
    ("builder", "prune"): ("dockyard.cli.cmd_system", "cmd_builder_prune"),
    ("system", "prune"): ("dockyard.cli.cmd_system", "cmd_system_prune"),
}

_GLOBAL_VALUE = {"-H": "host", "--host": "host", "--tlscacert": "tlscacert",
                 "--tlscert": "tlscert", "--tlskey": "tlskey", "-l": "log_level",
                 "--log-level": "log_level", "--config": "config", "-c": "context",
                 "--context": "context"}
_GLOBAL_FLAG = {"-D": "debug", "--debug": "debug", "--tls": "tls", "--tlsverify": "tlsverify"}


class Globals:
    def __init__(self) -> None:
        self.host: str | None = None
        self.tls = False
        self.tlsverify: bool | None = None
        self.tlscacert: str | None = None
        self.tlscert: str | None = None
        self.tlskey: str | None = None
        self.debug = False
        self.log_level = "info"
        self.config: str | None = None
        self.context: str | None = None
        self._client = None

    def client(self):
        if self._client is None:
            from dockyard.client import Client

            cacert, cert, key = self.tlscacert, self.tlscert, self.tlskey
            if self.config and (self.tls or self.tlsverify):
                # like docker: certificates default to the config directory
                cacert = cacert or os.path.join(self.config, "ca.pem")
                cert = cert or os.path.join(self.config, "cert.pem")
                key = key or os.path.join(self.config, "key.pem")
            from dockyard.client.transport import TransportError

            try:
                self._client = Client(self.host, tls=self.tls, tlsverify=self.tlsverify,
                                      tlscacert=cacert, tlscert=cert, tlskey=key)
            except TransportError as e:  # a -H / DOCKER_HOST we cannot use
                raise CommandError(f"Failed to initialize: unable to resolve docker "
                                   f"endpoint: {e}", 1) from None
        return self._client


def _parse_globals(args: list[str]) -> tuple[Globals, list[str]]:
    g = Globals()
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("-") or a == "-":
            break
        name, eq, val = a.partition("=")
        if name in _GLOBAL_VALUE:
            if not eq:
                i += 1
                if i >= len(args):
                    from dockyard.cli.parser import UsageError
                    raise UsageError(f"flag needs an argument: {name}\n"
                                     "See 'dockyard --help'.", 125)
                val = args[i]
            setattr(g, _GLOBAL_VALUE[name], val)
        elif name in _GLOBAL_FLAG:
            v = True if not eq else val.lower() in ("1", "true", "t")
            setattr(g, _GLOBAL_FLAG[name], v)
        else:
            break
        i += 1
    if g.tlsverify:
        g.tls = True
    return g, args[i:]


def _print_err(msg: str) -> None:
    sys.stderr.write(msg if msg.endswith("\n") else msg + "\n")


def main(args: list[str]) -> int:
    from dockyard.cli.parser import UsageError

    try:
        g, rest = _parse_globals(list(args))
    except UsageError as e:
        _print_err(str(e))
        return e.status
    if not rest:
        sys.stdout.write(USAGE)
        return 0
    if rest[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if rest[0] in ("-v", "--version"):
        from dockyard import __version__

        print(f"Dockyard version {__version__}")
        return 0
    if rest[0].startswith("-"):
        _print_err(f"unknown flag: {rest[0]}\nSee 'dockyard --help'.")
        return 125
    key: tuple[str, ...] | None = None
    if len(rest) >= 2 and (rest[0], rest[1]) in COMMANDS:
        key, argv = (rest[0], rest[1]), rest[2:]
    elif (rest[0],) in COMMANDS:
        key, argv = (rest[0],), rest[1:]
    elif rest[0] in ("image", "system", "container", "builder", "network", "volume"):
        subs = sorted(k[1] for k in COMMANDS if len(k) == 2 and k[0] == rest[0])
        if len(rest) == 1 or rest[1] in ("-h", "--help"):
            sys.stdout.write(f"Usage:  dockyard {rest[0]} COMMAND\n\nCommands:\n" +
                             "".join(f"  {s}\n" for s in subs))
            return 0
        _print_err(f"dockyard: unknown command: dockyard {rest[0]} {rest[1]}\n\n"
                   f"Run 'dockyard {rest[0]} --help' for more information")
        return 1
    if key is None:
        _print_err(f"dockyard: unknown command: dockyard {rest[0]}\n\n"
                   "Run 'dockyard --help' for more information")
        return 1
    module, func = COMMANDS[key]
    __import__(module)  # importlib itself would cost an import
    fn = getattr(sys.modules[module], func)
    return run_command(fn, g, argv)


def run_command(fn, g: Globals, argv: list[str]) -> int:
    from dockyard import errors
    from dockyard.cli.parser import UsageError
    from dockyard.client import DaemonUnreachable, StreamError

    try:
        return int(fn(g, argv) or 0)
    except UsageError as e:
        _print_err(str(e))
        return e.status
    except DaemonUnreachable as e:
        _print_err(str(e))
        return 1
    except StreamError as e:
        _print_err(str(e))
        return 1
    except CommandError as e:
        _print_err(str(e))
        return e.status
    except _template_error() as e:
        _print_err(str(e))
        return 1
    except errors.DockyardError as e:
        _print_err(f"Error response from daemon: {e}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    finally:
        if g._client is not None:
            g._client.close()


def _template_error():
    # only a command that loaded the template module can raise its error: don't load it
    mod = sys.modules.get("dockyard.cli.format")
    return mod.TemplateError if mod is not None else ()


class CommandError(Exception):
    """A client-side failure, printed as is (Docker prints these without a prefix)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status
