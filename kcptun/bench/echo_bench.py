# Throughput (64 MiB echoed, written and read at once) and 1-byte request/reply latency
# (1000 round trips, p50/p99) through a TCP tunnel entry; `echo PORT` runs the TCP echo
# target. Used by run.sh and link.sh (which set ECHO_MIB and ECHO_ROUND_TRIPS lower).
import os, socket, threading, time, sys
def echo_server(port):
    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(('127.0.0.1',port)); s.listen(64)
    def h(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d=c.recv(262144)
            if not d: break
            c.sendall(d)
        c.close()
    while True:
        c,_=s.accept(); threading.Thread(target=h,args=(c,),daemon=True).start()
def throughput(port, total=64<<20):
    c=socket.create_connection(('127.0.0.1',port)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf=b'\x5a'*65536; got=[0]
    def rd():
        while got[0]<total:
            d=c.recv(262144)
            if not d: break
            got[0]+=len(d)
    t=threading.Thread(target=rd); t0=time.time(); t.start()
    sent=0
    while sent<total: c.sendall(buf); sent+=len(buf)
    t.join(); dt=time.time()-t0; c.close()
    return got[0]/dt/(1<<20)
def latency(port, n=1000):
    c=socket.create_connection(('127.0.0.1',port)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sendall(b'x'); c.recv(1)
    ts=[]
    for _ in range(n):
        t0=time.perf_counter(); c.sendall(b'x'); c.recv(1); ts.append((time.perf_counter()-t0)*1000)
    ts.sort(); c.close()
    return ts[len(ts)//2], ts[int(len(ts)*0.99)]
if sys.argv[1]=='echo': echo_server(int(sys.argv[2]))
else:
    port=int(sys.argv[2])
    mib=int(os.environ.get("ECHO_MIB", "64"))
    n=int(os.environ.get("ECHO_ROUND_TRIPS", "1000"))
    mb=throughput(port, mib<<20)
    p50,p99=latency(port, n)
    print(f"{sys.argv[3]}: {mib} MiB echoed at {mb:.2f} MiB/s each way; 1-byte request/reply p50 {p50:.2f} ms p99 {p99:.2f} ms")
