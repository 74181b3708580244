#!/usr/bin/env python3
"""A libzmq peer (through pyzmq) for Nerve's transport interop tests.

Driven by integration-tests/tests/e2e/transport_interop.rs. Every wait is bounded (10 s);
failures exit 1 with a message on stderr.

  peer.py keypair
      Print "PUBLIC SECRET" made by zmq.curve_keypair() (Z85).
  peer.py dealer ENDPOINT [--curve SERVER_PUBLIC CLIENT_PUBLIC CLIENT_SECRET] [--heartbeats N]
      Connect a DEALER with identity b"py-dealer", send b"hello from libzmq", print
      "got REPLY". With --heartbeats N: ZMQ_HEARTBEAT_IVL 100 ms, then wait N intervals,
      print "connected=C disconnected=D" from the socket monitor, and do one more round trip.
  peer.py router ENDPOINT [--curve-server]
      Bind a ROUTER (with --curve-server: as CURVE server with a key pair from
      zmq.curve_keypair(), any client key accepted), print "bound LAST_ENDPOINT [PUBLIC]",
      receive one message, answer b"reply from libzmq", print "got IDENTITY_HEX MESSAGE".
"""

import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

TIMEOUT_MS = 10_000


def fail(message):
    print(f"peer.py: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def recv(sock):
    if not sock.poll(TIMEOUT_MS):
        fail("nothing received within 10 s")
    return sock.recv_multipart()


def dealer(args):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 1000
    sock.setsockopt(zmq.IDENTITY, b"py-dealer")
    endpoint = args[0]
    heartbeats = 0
    rest = args[1:]
    while rest:
        if rest[0] == "--curve":
            server_public, client_public, client_secret = rest[1:4]
            sock.curve_serverkey = server_public.encode()
            sock.curve_publickey = client_public.encode()
            sock.curve_secretkey = client_secret.encode()
            rest = rest[4:]
        elif rest[0] == "--heartbeats":
            heartbeats = int(rest[1])
            rest = rest[2:]
        else:
            fail(f"unknown argument {rest[0]}")
    monitor = None
    if heartbeats:
        sock.setsockopt(zmq.HEARTBEAT_IVL, 100)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 500)
        sock.setsockopt(zmq.HEARTBEAT_TTL, 1000)
        monitor = sock.get_monitor_socket()
    sock.connect(endpoint)
    sock.send(b"hello from libzmq")
    print("got", recv(sock)[-1].decode(), flush=True)
    if heartbeats:
        time.sleep(heartbeats * 0.1 + 0.2)
        counts = {"connected": 0, "disconnected": 0}
        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_CONNECTED:
                counts["connected"] += 1
            elif event == zmq.EVENT_DISCONNECTED:
                counts["disconnected"] += 1
        print(f"connected={counts['connected']} disconnected={counts['disconnected']}", flush=True)
        sock.send(b"hello again")
        print("got", recv(sock)[-1].decode(), flush=True)
        sock.disable_monitor()
        monitor.close()
    sock.close()
    ctx.term()


def router(args):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 1000
    public = ""
    if "--curve-server" in args[1:]:
        public_b, secret_b = zmq.curve_keypair()
        sock.curve_server = True
        sock.curve_secretkey = secret_b
        public = public_b.decode()
    sock.bind(args[0])
    print("bound", sock.last_endpoint.decode(), public, flush=True)
    frames = recv(sock)
    identity, message = frames[0], frames[-1]
    sock.send_multipart([identity, b"reply from libzmq"])
    print("got", identity.hex(), message.decode(), flush=True)
    time.sleep(0.2)
    sock.close()
    ctx.term()


def main():
    if len(sys.argv) < 2:
        fail(__doc__)
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "keypair":
        public, secret = zmq.curve_keypair()
        print(public.decode(), secret.decode(), flush=True)
    elif mode == "dealer":
        dealer(args)
    elif mode == "router":
        router(args)
    else:
        fail(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
