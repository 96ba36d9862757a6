"""Real network faults for the soak (docs/reliability.md): a network namespace joined to the
relay's by a veth pair, degraded on both ends, and per-address blackhole routes.

Two backends, chosen by `probe()`: `tc netem` (delay, jitter, loss, duplication, reordering)
where the kernel has it; otherwise nftables `numgen random` drops (loss) plus a `tc tbf` rate
limit (queueing delay and jitter under load) — no fixed delay, duplication or reordering then.
Either way a partition is 100 % loss on both directions, and it heals.

Everything is created with iproute2 under names carrying the harness's pid and removed by
`teardown()`, which is safe to call twice and on every exit path. Addresses are private
(10.200.N.0/24, RFC 1918); nothing leaves the machine.
"""

import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def _free_subnet():
    """A 10.200.N.0/24 not already on any interface of the root namespace."""
    used = _ip("ip", "-4", "-o", "addr", "show").stdout
    for n in [os.getpid() % 200 + 20] + list(range(20, 250)):
        if f" 10.200.{n}." not in used:
            return n
    raise RuntimeError("no free 10.200.N.0/24")


class NetFaults:
    """Host side 10.200.N.1 (the relays listen there) plus local client sources .100–.249;
    the namespace side holds .2–.40 (netem clients) and .41–.60 (clients that vanish)."""

    NS_CLIENTS = range(2, 41)
    NS_VANISH = range(41, 61)
    LOCAL_CLIENTS = range(100, 250)

    def __init__(self):
        tag = os.getpid()
        self.ns = f"pyrysoak{tag}"
        self.host_if = f"psk{tag}h"
        self.ns_if = f"psk{tag}n"
        self.net = None
        self.ns_fd = self.root_fd = None
        self.blackholed = set()
        self.profile = None
        self.backend = None

    @property
    def relay_ip(self):
        return f"10.200.{self.net}.1"

    def addr(self, host):
        return f"10.200.{self.net}.{host}"

    def setup(self, backend):
        self.backend = backend
        self.net = _free_subnet()
        _ip("ip", "netns", "add", self.ns)
        _ip("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("ip", "link", "set", self.ns_if, "netns", self.ns)
        _ip("ip", "addr", "add", f"{self.relay_ip}/24", "dev", self.host_if)
        for h in self.LOCAL_CLIENTS:
            _ip("ip", "addr", "add", f"{self.addr(h)}/32", "dev", self.host_if)
        _ip("ip", "link", "set", self.host_if, "up")
        _ip("ip", "link", "set", "lo", "up", ns=self.ns)
        for h in list(self.NS_CLIENTS) + list(self.NS_VANISH):
            _ip("ip", "addr", "add", f"{self.addr(h)}/24", "dev", self.ns_if, ns=self.ns)
        _ip("ip", "link", "set", self.ns_if, "up", ns=self.ns)
        self.ns_fd = os.open(f"/var/run/netns/{self.ns}", os.O_RDONLY)
        self.root_fd = os.open("/proc/self/ns/net", os.O_RDONLY)

    def socket_in_ns(self, family, kind):
        """A socket created inside the namespace (a socket keeps the namespace it was made in);
        the calling thread is back in the root namespace when this returns."""
        import socket
        if _libc.setns(self.ns_fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the soak namespace")
        try:
            return socket.socket(family, kind)
        finally:
            if _libc.setns(self.root_fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the root namespace")

    # name → (netem arguments, (loss per mille, tbf arguments or None)) for the two backends.
    PROFILES = {
        "clean": ("delay 1ms", (0, None)),
        "mild": ("delay 20ms 5ms loss 0.2%", (2, "rate 20mbit burst 64kb latency 100ms")),
        "bad": ("delay 80ms 40ms distribution normal loss 2% duplicate 0.5% reorder 5% 50%",
                (20, "rate 2mbit burst 16kb latency 400ms")),
        "partition": ("loss 100%", (1000, None)),
    }

    def set_profile(self, name):
        """Degrades both directions of the namespace link as profile `name` says."""
        netem, (loss, tbf) = self.PROFILES[name]
        if self.backend == "netem":
            verb = "change" if self.profile else "add"
            for dev, ns in ((self.host_if, None), (self.ns_if, self.ns)):
                _ip("tc", "qdisc", verb, "dev", dev, "root", "netem", *netem.split(), ns=ns)
        else:
            if self.profile is None:
                _ip("nft", "add", "table", "inet", "soak", ns=self.ns)
                for chain, hook in (("in", "input"), ("out", "output")):
                    _ip("nft", "add", "chain", "inet", "soak", chain,
                        f"{{ type filter hook {hook} priority 0; policy accept; }}", ns=self.ns)
            for chain in ("in", "out"):
                _ip("nft", "flush", "chain", "inet", "soak", chain, ns=self.ns)
                if loss >= 1000:
                    _ip("nft", "add", "rule", "inet", "soak", chain, "drop", ns=self.ns)
                elif loss:
                    _ip("nft", "add", "rule", "inet", "soak", chain, "numgen", "random", "mod", "1000",
                        "<", str(loss), "drop", ns=self.ns)
            for dev, ns in ((self.host_if, None), (self.ns_if, self.ns)):
                _ip("tc", "qdisc", "del", "dev", dev, "root", ns=ns, check=False)
                if tbf:
                    _ip("tc", "qdisc", "add", "dev", dev, "root", "tbf", *tbf.split(), ns=ns)
        self.profile = name

    def blackhole(self, host, on):
        """Relay → that namespace address goes nowhere (no RST, no FIN): the client has vanished."""
        a = self.addr(host)
        if on:
            _ip("ip", "route", "add", "blackhole", f"{a}/32")
            self.blackholed.add(a)
        elif a in self.blackholed:
            _ip("ip", "route", "del", "blackhole", f"{a}/32", check=False)
            self.blackholed.discard(a)

    def teardown(self):
        for a in list(self.blackholed):
            _ip("ip", "route", "del", "blackhole", f"{a}/32", check=False)
        self.blackholed.clear()
        for fd in (self.ns_fd, self.root_fd):
            if fd is not None:
                os.close(fd)
        self.ns_fd = self.root_fd = None
        # Deleting one end of a veth pair deletes both; deleting the namespace removes its end.
        _ip("ip", "link", "del", self.host_if, check=False)
        _ip("ip", "netns", "del", self.ns, check=False)


def reap_stale():
    """Removes what a harness killed with SIGKILL left behind: namespaces, links and blackhole
    routes named after a pid that no longer runs."""
    import re
    for line in _ip("ip", "netns", "list", check=False).stdout.splitlines():
        m = re.match(r"pyrysoak(\d+)\b", line)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            pid = m.group(1)
            ns_addrs = _ip("ip", "-4", "-o", "addr", "show", ns=f"pyrysoak{pid}", check=False).stdout
            nets = set(re.findall(r"inet 10\.200\.(\d+)\.", ns_addrs))
            _ip("ip", "link", "del", f"psk{pid}h", check=False)
            _ip("ip", "netns", "del", f"pyrysoak{pid}", check=False)
            for route in _ip("ip", "route", "show", "type", "blackhole", check=False).stdout.splitlines():
                parts = route.split()
                if len(parts) >= 2 and any(parts[1].startswith(f"10.200.{n}.") for n in nets):
                    _ip("ip", "route", "del", "blackhole", parts[1], check=False)


def _have(tool):
    return subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode == 0


def probe():
    """("netem" | "nft", None) when namespaces, veth and one fault backend work here; else
    (None, the reason they do not)."""
    for tool in ("ip", "tc"):
        if not _have(tool):
            return None, f"`{tool}` not found (iproute2; scripts/ensure-deps.sh installs it)"
    if os.geteuid() != 0:
        return None, "not root: creating network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN"
    reap_stale()
    name = f"pyrysoakprobe{os.getpid()}"
    r = _ip("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        return None, f"ip netns add failed: {r.stderr.strip()}"
    dev = f"pskp{os.getpid()}"
    try:
        r = _ip("ip", "link", "add", dev, "type", "veth", "peer", "name", f"pskq{os.getpid()}", check=False)
        if r.returncode != 0:
            return None, f"veth unavailable: {r.stderr.strip()}"
        netem = _ip("tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms", check=False)
        if netem.returncode == 0:
            return "netem", None
        tbf = _ip("tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "1mbit", "burst", "16kb",
                  "latency", "100ms", check=False)
        nft = _ip("nft", "add", "table", "inet", "soakprobe", ns=name, check=False) if _have("nft") else None
        if tbf.returncode == 0 and nft is not None and nft.returncode == 0:
            return "nft", None
        return None, (f"tc netem unavailable ({netem.stderr.strip()}) and no fallback "
                      f"(tbf: {tbf.stderr.strip() or 'ok'}; nft: {'missing' if nft is None else nft.stderr.strip() or 'ok'})")
    finally:
        _ip("ip", "link", "del", dev, check=False)
        _ip("ip", "netns", "del", name, check=False)
