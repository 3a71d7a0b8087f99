# A UDP link emulator for the kcptun measurements: relays datagrams between the clients that
# send to LISTEN and the server at TARGET (loopback ports), each direction through its own
# bottleneck: a rate (serialisation), a drop-tail queue of QUEUE bytes in front of it, then a
# one-way delay. The same model as the TCP relay of `smux_test_support::netem`, for datagrams.
#
#   python3 udp_link.py LISTEN TARGET --delay-ms 20 --rate-mbit 20 --queue-kib 128
import argparse
import asyncio
import socket


class Bottleneck:
    """One direction: datagrams leave at `rate`, wait in a queue of at most `queue` bytes
    (beyond it they are dropped), and arrive `delay` seconds after they left."""

    def __init__(self, loop, rate_bps, queue_bytes, delay):
        self.loop = loop
        self.rate = rate_bps / 8.0
        self.queue = queue_bytes
        self.delay = delay
        self.busy_until = 0.0
        self.dropped = 0

    def send(self, data, deliver):
        now = self.loop.time()
        start = max(now, self.busy_until)
        if (start - now) * self.rate + len(data) > self.queue:
            self.dropped += 1
            return
        self.busy_until = start + len(data) / self.rate
        self.loop.call_at(self.busy_until + self.delay, deliver, data)


class Upstream(asyncio.DatagramProtocol):
    """The relay's socket towards the server for one client address."""

    def __init__(self, relay, client):
        self.relay = relay
        self.client = client
        self.transport = None
        # Datagrams that came before the socket was open.
        self.pending = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, _addr):
        self.relay.down.send(data, lambda d: self.relay.transport.sendto(d, self.client))


class Relay(asyncio.DatagramProtocol):
    def __init__(self, loop, target, up, down):
        self.loop = loop
        self.target = target
        self.up = up
        self.down = down
        self.upstreams = {}
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, client):
        upstream = self.upstreams.get(client)
        if upstream is None:
            upstream = Upstream(self, client)
            self.upstreams[client] = upstream
            self.loop.create_task(self.open(upstream))
        if upstream.transport is None:
            upstream.pending.append(data)
            return
        self.up.send(data, lambda d: upstream.transport.sendto(d))

    async def open(self, upstream):
        await self.loop.create_datagram_endpoint(
            lambda: upstream, remote_addr=("127.0.0.1", self.target), family=socket.AF_INET
        )
        for data in upstream.pending:
            self.up.send(data, lambda d: upstream.transport.sendto(d))
        upstream.pending = []


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("listen", type=int)
    p.add_argument("target", type=int)
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--rate-mbit", type=float, default=20.0)
    p.add_argument("--queue-kib", type=float, default=128.0)
    a = p.parse_args()
    loop = asyncio.get_running_loop()
    rate = a.rate_mbit * 1e6
    queue = int(a.queue_kib * 1024)
    up = Bottleneck(loop, rate, queue, a.delay_ms / 1000.0)
    down = Bottleneck(loop, rate, queue, a.delay_ms / 1000.0)
    await loop.create_datagram_endpoint(
        lambda: Relay(loop, a.target, up, down), local_addr=("127.0.0.1", a.listen)
    )
    await asyncio.Event().wait()


asyncio.run(main())
