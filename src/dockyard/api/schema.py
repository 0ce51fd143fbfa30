"""The Docker API's request body types, and one checker for them (plain data in, plain
data out; no HTTP here).

``check(TYPE, value)`` returns the value as dockerd's Go decoder would see it, or
raises :class:`~dockyard.errors.InvalidParameter` with Go's wording
(``json: cannot unmarshal string into Go struct field ContainerConfig.Env of type
[]string``). As in Go's encoding/json:

* field names match case-insensitively (an exact match first); the result uses the
  canonical spelling; fields the type does not know are passed through untouched;
* ``null`` leaves a plain field unset (the key is dropped) and sets a slice, map or
  pointer field to null; a null list element or map value is its type's zero value;
* numbers must fit the field: no fractions for integers, no bools for numbers.
"""

from __future__ import annotations

from typing import Any

from dockyard.errors import InvalidParameter


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


class _Mismatch(Exception):
    def __init__(self, kind: str, go: str) -> None:
        self.kind, self.go = kind, go


class Type:
    go = "?"
    nullable = False   # slices, maps, pointers, interfaces: null is a value

    def zero(self) -> Any:
        return None

    def check(self, v: Any, path: list[str], struct: str) -> Any:
        raise NotImplementedError


class _Str(Type):
    go = "string"

    def zero(self) -> Any:
        return ""

    def check(self, v, path, struct):
        if not isinstance(v, str):
            raise _Mismatch(_json_kind(v), self.go)
        return v


class _Bool(Type):
    go = "bool"

    def zero(self) -> Any:
        return False

    def check(self, v, path, struct):
        if not isinstance(v, bool):
            raise _Mismatch(_json_kind(v), self.go)
        return v


class Int(Type):
    def __init__(self, go: str = "int64") -> None:
        self.go = go
        bits = int("".join(c for c in go if c.isdigit()) or 64)
        if go.startswith("u"):
            self.lo, self.hi = 0, 2 ** bits - 1
        else:
            self.lo, self.hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def zero(self) -> Any:
        return 0

    def check(self, v, path, struct):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Mismatch(_json_kind(v), self.go)
        if isinstance(v, float) or not self.lo <= v <= self.hi:
            raise _Mismatch(f"number {v}", self.go)
        return v


class _Float(Type):
    go = "float64"

    def zero(self) -> Any:
        return 0.0

    def check(self, v, path, struct):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Mismatch(_json_kind(v), self.go)
        return v


class _Any(Type):
    go = "interface {}"
    nullable = True

    def check(self, v, path, struct):
        return v


class _Empty(Type):
    """``struct {}`` (ExposedPorts' and Volumes' values): any object."""
    go = "struct {}"

    def zero(self) -> Any:
        return {}

    def check(self, v, path, struct):
        if not isinstance(v, dict):
            raise _Mismatch(_json_kind(v), self.go)
        return v


class Ptr(Type):
    nullable = True

    def __init__(self, elem: Type) -> None:
        self.elem = elem
        self.go = "*" + elem.go

    def check(self, v, path, struct):
        return None if v is None else self.elem.check(v, path, struct)


class List(Type):
    nullable = True

    def __init__(self, elem: Type) -> None:
        self.elem = elem
        self.go = "[]" + elem.go

    def check(self, v, path, struct):
        if not isinstance(v, list):
            raise _Mismatch(_json_kind(v), self.go)
        return [self.elem.zero() if x is None and not self.elem.nullable
                else self.elem.check(x, path, struct) for x in v]


class Map(Type):
    nullable = True

    def __init__(self, elem: Type) -> None:
        self.elem = elem
        self.go = "map[string]" + elem.go

    def check(self, v, path, struct):
        if not isinstance(v, dict):
            raise _Mismatch(_json_kind(v), self.go)
        return {k: self.elem.zero() if x is None and not self.elem.nullable
                else self.elem.check(x, path, struct) for k, x in v.items()}


class _StrSlice(Type):
    """strslice.StrSlice (Cmd, Entrypoint, CapAdd...): a string (one element) or a list."""
    go = "strslice.StrSlice"
    nullable = True

    def check(self, v, path, struct):
        if isinstance(v, str):
            return [v]
        if not isinstance(v, list):
            raise _Mismatch(_json_kind(v), "[]string")
        return List(STR).check(v, path, struct)


class Struct(Type):
    def __init__(self, name: str, fields: dict[str, Type], go: str | None = None) -> None:
        self.name = name
        self.go = go or name
        self.fields = fields
        self._folded = {k.lower(): k for k in fields}

    def zero(self) -> Any:
        return {}

    def check(self, v, path, struct):
        if not isinstance(v, dict):
            raise _Mismatch(_json_kind(v), self.go)
        out: dict = {}
        for k, x in v.items():
            name = k if k in self.fields else self._folded.get(k.lower())
            if name is None:
                out[k] = x              # not ours to judge: passed through
                continue
            t = self.fields[name]
            if x is None and not t.nullable:
                out.pop(name, None)     # Go: null has no effect on a plain field
                continue
            try:
                out[name] = None if x is None else t.check(x, path + [name], self.name)
            except _Mismatch as e:
                raise InvalidParameter(
                    f"json: cannot unmarshal {e.kind} into Go struct field "
                    f"{self.name}.{'.'.join(path + [name])} of type {e.go}") from None
        return out

    def extend(self, name: str, fields: dict[str, Type], go: str | None = None) -> "Struct":
        return Struct(name, {**self.fields, **fields}, go)


def check(t: Struct, value: Any, what: str | None = None) -> dict:
    """``value`` (a decoded JSON body) as type ``t``; InvalidParameter if it is not one."""
    if not isinstance(value, dict):
        raise InvalidParameter(f"json: cannot unmarshal {_json_kind(value)} into Go value of "
                               f"type {what or t.go}")
    return t.check(value, [], t.name)


STR, BOOL, I64, INT, F64, ANY, EMPTY = _Str(), _Bool(), Int("int64"), Int("int64"), _Float(), \
    _Any(), _Empty()
U16, U32, U64, UINT = Int("uint16"), Int("uint32"), Int("uint64"), Int("uint64")
STRS, STRMAP, STRSLICE = List(STR), Map(STR), _StrSlice()

# ---- container.Config, HostConfig and friends (API v1.47) ------------------------------------
HEALTH_CONFIG = Struct("HealthConfig", {
    "Test": STRS, "Interval": I64, "Timeout": I64, "StartPeriod": I64, "StartInterval": I64,
    "Retries": INT}, "container.HealthConfig")

CONFIG = Struct("ContainerConfig", {
    "Hostname": STR, "Domainname": STR, "User": STR, "AttachStdin": BOOL, "AttachStdout": BOOL,
    "AttachStderr": BOOL, "ExposedPorts": Map(EMPTY), "Tty": BOOL, "OpenStdin": BOOL,
    "StdinOnce": BOOL, "Env": STRS, "Cmd": STRSLICE, "Healthcheck": Ptr(HEALTH_CONFIG),
    "ArgsEscaped": BOOL, "Image": STR, "Volumes": Map(EMPTY), "WorkingDir": STR,
    "Entrypoint": STRSLICE, "NetworkDisabled": BOOL, "MacAddress": STR, "OnBuild": STRS,
    "Labels": STRMAP, "StopSignal": STR, "StopTimeout": Ptr(INT), "Shell": STRSLICE,
}, "container.Config")

_WEIGHT_DEVICE = Struct("WeightDevice", {"Path": STR, "Weight": U16}, "blkiodev.WeightDevice")
_THROTTLE_DEVICE = Struct("ThrottleDevice", {"Path": STR, "Rate": U64}, "blkiodev.ThrottleDevice")
_DEVICE_MAPPING = Struct("DeviceMapping", {"PathOnHost": STR, "PathInContainer": STR,
                                           "CgroupPermissions": STR}, "container.DeviceMapping")
_DEVICE_REQUEST = Struct("DeviceRequest", {"Driver": STR, "Count": INT, "DeviceIDs": STRS,
                                           "Capabilities": List(STRS), "Options": STRMAP},
                         "container.DeviceRequest")
_ULIMIT = Struct("Ulimit", {"Name": STR, "Hard": I64, "Soft": I64}, "units.Ulimit")

RESOURCES = {
    "CpuShares": I64, "Memory": I64, "NanoCpus": I64, "CgroupParent": STR, "BlkioWeight": U16,
    "BlkioWeightDevice": List(Ptr(_WEIGHT_DEVICE)),
    "BlkioDeviceReadBps": List(Ptr(_THROTTLE_DEVICE)),
    "BlkioDeviceWriteBps": List(Ptr(_THROTTLE_DEVICE)),
    "BlkioDeviceReadIOps": List(Ptr(_THROTTLE_DEVICE)),
    "BlkioDeviceWriteIOps": List(Ptr(_THROTTLE_DEVICE)),
    "CpuPeriod": I64, "CpuQuota": I64, "CpuRealtimePeriod": I64, "CpuRealtimeRuntime": I64,
    "CpusetCpus": STR, "CpusetMems": STR, "Devices": List(_DEVICE_MAPPING),
    "DeviceCgroupRules": STRS, "DeviceRequests": List(_DEVICE_REQUEST), "KernelMemory": I64,
    "KernelMemoryTCP": I64, "MemoryReservation": I64, "MemorySwap": I64,
    "MemorySwappiness": Ptr(I64), "OomKillDisable": Ptr(BOOL), "PidsLimit": Ptr(I64),
    "Ulimits": List(Ptr(_ULIMIT)), "CpuCount": I64, "CpuPercent": I64,
    "IOMaximumIOps": U64, "IOMaximumBandwidth": U64,
}

RESTART_POLICY = Struct("RestartPolicy", {"Name": STR, "MaximumRetryCount": INT},
                        "container.RestartPolicy")
_PORT_BINDING = Struct("PortBinding", {"HostIp": STR, "HostPort": STR}, "nat.PortBinding")
_DRIVER = Struct("Driver", {"Name": STR, "Options": STRMAP}, "mount.Driver")
_MOUNT = Struct("Mount", {
    "Type": STR, "Source": STR, "Target": STR, "ReadOnly": BOOL, "Consistency": STR,
    "BindOptions": Ptr(Struct("BindOptions", {
        "Propagation": STR, "NonRecursive": BOOL, "CreateMountpoint": BOOL,
        "ReadOnlyNonRecursive": BOOL, "ReadOnlyForceRecursive": BOOL}, "mount.BindOptions")),
    "VolumeOptions": Ptr(Struct("VolumeOptions", {
        "NoCopy": BOOL, "Labels": STRMAP, "Subpath": STR, "DriverConfig": Ptr(_DRIVER)},
        "mount.VolumeOptions")),
    "TmpfsOptions": Ptr(Struct("TmpfsOptions", {
        "SizeBytes": I64, "Mode": U32, "Options": List(STRS)}, "mount.TmpfsOptions")),
}, "mount.Mount")

HOST_CONFIG = Struct("HostConfig", {
    "Binds": STRS, "ContainerIDFile": STR,
    "LogConfig": Struct("LogConfig", {"Type": STR, "Config": STRMAP}, "container.LogConfig"),
    "NetworkMode": STR, "PortBindings": Map(List(_PORT_BINDING)),
    "RestartPolicy": RESTART_POLICY, "AutoRemove": BOOL, "VolumeDriver": STR,
    "VolumesFrom": STRS, "ConsoleSize": List(UINT), "Annotations": STRMAP,
    "CapAdd": STRSLICE, "CapDrop": STRSLICE, "CgroupnsMode": STR, "Dns": STRS,
    "DnsOptions": STRS, "DnsSearch": STRS, "ExtraHosts": STRS, "GroupAdd": STRS,
    "IpcMode": STR, "Cgroup": STR, "Links": STRS, "OomScoreAdj": INT, "PidMode": STR,
    "Privileged": BOOL, "PublishAllPorts": BOOL, "ReadonlyRootfs": BOOL, "SecurityOpt": STRS,
    "StorageOpt": STRMAP, "Tmpfs": STRMAP, "UTSMode": STR, "UsernsMode": STR, "ShmSize": I64,
    "Sysctls": STRMAP, "Runtime": STR, "Isolation": STR, **RESOURCES,
    "Mounts": List(_MOUNT), "MaskedPaths": STRS, "ReadonlyPaths": STRS, "Init": Ptr(BOOL),
}, "container.HostConfig")

ENDPOINT_SETTINGS = Struct("EndpointSettings", {
    "IPAMConfig": Ptr(Struct("EndpointIPAMConfig", {
        "IPv4Address": STR, "IPv6Address": STR, "LinkLocalIPs": STRS},
        "network.EndpointIPAMConfig")),
    "Links": STRS, "Aliases": STRS, "MacAddress": STR, "DriverOpts": STRMAP, "NetworkID": STR,
    "EndpointID": STR, "Gateway": STR, "IPAddress": STR, "IPPrefixLen": INT,
    "IPv6Gateway": STR, "GlobalIPv6Address": STR, "GlobalIPv6PrefixLen": INT,
    "DNSNames": STRS,
}, "network.EndpointSettings")

NETWORKING_CONFIG = Struct("NetworkingConfig", {
    "EndpointsConfig": Map(Ptr(ENDPOINT_SETTINGS))}, "network.NetworkingConfig")

# POST /containers/create: Config with HostConfig and NetworkingConfig beside it
CREATE = CONFIG.extend("ContainerConfig", {
    "HostConfig": Ptr(HOST_CONFIG), "NetworkingConfig": Ptr(NETWORKING_CONFIG)},
    "container.CreateRequest")

# POST /containers/{id}/update
UPDATE = Struct("UpdateConfig", {**RESOURCES, "RestartPolicy": RESTART_POLICY},
                "container.UpdateConfig")

# POST /containers/{id}/exec and /exec/{id}/start
EXEC_CREATE = Struct("ExecConfig", {
    "User": STR, "Privileged": BOOL, "Tty": BOOL, "ConsoleSize": Ptr(List(UINT)),
    "AttachStdin": BOOL, "AttachStderr": BOOL, "AttachStdout": BOOL, "Detach": BOOL,
    "DetachKeys": STR, "Env": STRS, "WorkingDir": STR, "Cmd": STRSLICE,
}, "container.ExecOptions")
EXEC_START = Struct("ExecStartCheck", {"Detach": BOOL, "Tty": BOOL,
                                       "ConsoleSize": Ptr(List(UINT))},
                    "container.ExecStartOptions")

# POST /auth
AUTH = Struct("AuthConfig", {
    "username": STR, "password": STR, "auth": STR, "email": STR, "serveraddress": STR,
    "identitytoken": STR, "registrytoken": STR}, "registry.AuthConfig")

# POST /networks/create, /networks/{id}/connect, /networks/{id}/disconnect
_IPAM_CONFIG = Struct("IPAMConfig", {"Subnet": STR, "IPRange": STR, "Gateway": STR,
                                     "AuxiliaryAddresses": STRMAP}, "network.IPAMConfig")
NETWORK_CREATE = Struct("CreateRequest", {
    "Name": STR, "CheckDuplicate": BOOL, "Driver": STR, "Scope": STR, "EnableIPv4": Ptr(BOOL),
    "EnableIPv6": Ptr(BOOL), "IPAM": Ptr(Struct("IPAM", {
        "Driver": STR, "Options": STRMAP, "Config": List(_IPAM_CONFIG)}, "network.IPAM")),
    "Internal": BOOL, "Attachable": BOOL, "Ingress": BOOL, "ConfigOnly": BOOL,
    "ConfigFrom": Ptr(Struct("ConfigReference", {"Network": STR}, "network.ConfigReference")),
    "Options": STRMAP, "Labels": STRMAP,
}, "network.CreateRequest")
NETWORK_CONNECT = Struct("ConnectOptions", {
    "Container": STR, "EndpointConfig": Ptr(ENDPOINT_SETTINGS)}, "network.ConnectOptions")
NETWORK_DISCONNECT = Struct("DisconnectOptions", {"Container": STR, "Force": BOOL},
                            "network.DisconnectOptions")
