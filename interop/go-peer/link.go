// The Go side of the link benchmark (benches/benches/link.rs): bench mode over an emulated
// path. The Rust bench process runs the link emulator (a relay) and starts this peer with
//
//	-via -        the client dials the relay instead of the server's listener: the server's
//	              address is printed as "listening ADDR", then the relay's address is read
//	              from the first line of stdin (the relay forwards to the server); later, the
//	              end of stdin (the bench process is gone) ends this process
//	-via ADDR     the client dials ADDR
//	-lowat N      TCP_NOTSENT_LOWAT = N on both TCP connections (0: not set)
//
// and one more scenario beside those of bench.go:
//
//	-scenario inter -conns K -warmup MS -measure MS -interval MS
//	              an interactive stream beside K bulk streams on one session: the client opens
//	              the bulk streams (first byte 'b') and the server writes 64 KiB chunks to them
//	              without stopping (a download), the client reading and discarding; after
//	              -warmup, the client writes a 1-byte request on the interactive stream (first
//	              byte 'i') every -interval for -measure, and the server echoes each at once.
//	              Requests go out on schedule whatever the replies do (open loop); a round
//	              trip is timed from its scheduled send time to its reply. units = bulk bytes
//	              read by the client during the measurement, secs = its length, and the result
//	              line gets lat_us=L1,L2,... (every round trip, in µs, in order)
//
// With -role, this process runs one end of bulk or inter only, over one TCP connection, and
// the other end is another peer (the link benchmark's mixed cases: the Rust multiplexer,
// with the relay in between):
//
//	-role server  listen on -addr, print "listening ADDR", accept one connection and serve
//	              the scenario's server side on it: inter as above; bulk reads every stream
//	              to its end, prints "read bytes=N last_ns=T" (T: when the stream's last
//	              bytes came, Unix time in ns) and then closes the stream
//	-role client  dial -addr and run the scenario's client side, then print the result
//	              line: inter as above; bulk opens -conns streams, writes -bytes in all and
//	              closes them, with secs = until the last write and close returned and the
//	              extra field start_ns (when the first stream was opened, Unix time in ns),
//	              from which the other end times the transfer until its last read
//
// Either role ends when stdin closes (the bench process is done with it, or gone), with
// status 0 once the client printed its result (the server always), 1 otherwise. Both ends
// must be on one host for the Unix times to compare.
package main

import (
	"bufio"
	"flag"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xtaci/smux"
)

var (
	benchVia      = flag.String("via", "", "bench: the client dials this address (- : read it from stdin) instead of the server's")
	benchLowat    = flag.Int("lowat", 0, "bench: TCP_NOTSENT_LOWAT on both connections (0: not set)")
	benchWarmup   = flag.Int("warmup", 2000, "bench inter: ms of bulk transfer before the measurement")
	benchMeasure  = flag.Int("measure", 8000, "bench inter: ms of measurement")
	benchInterval = flag.Int("interval", 50, "bench inter: ms between interactive requests")
	benchRole     = flag.String("role", "", "bench bulk and inter: run only the server or the client end, against another peer (empty: both ends here)")
)

// roleDone is set once the client of -role client has its result.
var roleDone int32

// tcpNotsentLowat is TCP_NOTSENT_LOWAT of linux/tcp.h (Go 1.19's syscall package lacks it).
const tcpNotsentLowat = 25

// dialAddr is where the bench client connects: the server's listener, or the relay of -via.
func dialAddr(server net.Addr) string {
	switch *benchVia {
	case "":
		return server.String()
	case "-":
		out("listening %s", server)
		stdin := bufio.NewReader(os.Stdin)
		line, err := stdin.ReadString('\n')
		if err != nil {
			fail("via: reading the relay's address from stdin: %v", err)
		}
		go func() {
			io.Copy(io.Discard, stdin)
			fail("via: stdin closed (the bench process ended)")
		}()
		return strings.TrimSpace(line)
	default:
		return *benchVia
	}
}

// setLowat applies -lowat to a TCP connection.
func setLowat(c net.Conn) {
	if *benchLowat <= 0 {
		return
	}
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		fail("lowat: %v", err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat, *benchLowat)
	})
	if err != nil || serr != nil {
		fail("lowat: setsockopt TCP_NOTSENT_LOWAT: %v %v", err, serr)
	}
}

// benchInter runs the inter scenario (see the top of this file) with both ends in this
// process. It returns the length of the measurement, the bulk bytes read meanwhile and every
// round trip.
func benchInter(client, server *smux.Session) (float64, int64, []time.Duration) {
	interServe(server)
	return interClient(client)
}

// interServe is the server's side of the inter scenario: a stream whose first byte is 'b'
// gets 64 KiB chunks without end, one whose first byte is 'i' is echoed.
func interServe(server *smux.Session) {
	serveEach(server, func(st *smux.Stream) {
		kind := make([]byte, 1)
		if _, err := io.ReadFull(st, kind); err != nil {
			return
		}
		switch kind[0] {
		case 'b':
			chunk := make([]byte, benchChunk)
			for {
				if _, err := st.Write(chunk); err != nil {
					return
				}
			}
		case 'i':
			echoBytes(st)
		default:
			fail("inter: unknown stream kind %q", kind[0])
		}
	})
}

// interClient is the client's side of the inter scenario: it opens the downloads and the
// interactive stream, waits out the warm-up and times the requests. It returns the length of
// the measurement, the bulk bytes read meanwhile and every round trip.
func interClient(client *smux.Session) (float64, int64, []time.Duration) {
	var received int64
	for i := 0; i < *benchConns; i++ {
		st, err := client.OpenStream()
		if err != nil {
			fail("inter: open a bulk stream: %v", err)
		}
		if _, err := st.Write([]byte{'b'}); err != nil {
			fail("inter: bulk write: %v", err)
		}
		go func() {
			buf := make([]byte, benchChunk)
			for {
				n, err := st.Read(buf)
				atomic.AddInt64(&received, int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	st, err := client.OpenStream()
	if err != nil {
		fail("inter: open: %v", err)
	}
	if _, err := st.Write([]byte{'i'}); err != nil {
		fail("inter: write: %v", err)
	}
	time.Sleep(time.Duration(*benchWarmup) * time.Millisecond)

	interval := time.Duration(*benchInterval) * time.Millisecond
	n := *benchMeasure / *benchInterval
	start := time.Now()
	before := atomic.LoadInt64(&received)
	lat := make([]time.Duration, 0, n)
	replies := make(chan struct{})
	go func() {
		b := make([]byte, 1)
		for i := 0; i < n; i++ {
			if _, err := io.ReadFull(st, b); err != nil {
				fail("inter: read reply %d: %v", i, err)
			}
			if b[0] != byte(i) {
				fail("inter: reply %d is %d", i, b[0])
			}
			lat = append(lat, time.Since(start.Add(time.Duration(i)*interval)))
		}
		close(replies)
	}()
	for i := 0; i < n; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		if _, err := st.Write([]byte{byte(i)}); err != nil {
			fail("inter: request %d: %v", i, err)
		}
	}
	time.Sleep(time.Until(start.Add(time.Duration(n) * interval)))
	bytes := atomic.LoadInt64(&received) - before
	secs := time.Since(start).Seconds()
	<-replies
	return secs, bytes, lat
}

// latencyField is the lat_us=... field of the inter scenario's result line.
func latencyField(lat []time.Duration) string {
	us := make([]string, len(lat))
	for i, d := range lat {
		us[i] = strconv.FormatInt(d.Microseconds(), 10)
	}
	return " lat_us=" + strings.Join(us, ",")
}

// runRole runs the end of the scenario that -role names (see the top of this file).
func runRole() {
	if *benchScenario != "bulk" && *benchScenario != "inter" {
		fail("-role: scenario %q has no separate ends (bulk, inter)", *benchScenario)
	}
	var conn net.Conn
	var err error
	switch *benchRole {
	case "server":
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			fail("listen: %v", err)
		}
		out("listening %s", ln.Addr())
		go watchStdin()
		if conn, err = ln.Accept(); err != nil {
			fail("accept: %v", err)
		}
		ln.Close()
	case "client":
		go watchStdin()
		if conn, err = net.Dial("tcp", *addr); err != nil {
			fail("dial: %v", err)
		}
	default:
		fail("unknown -role %q (server or client)", *benchRole)
	}
	setLowat(conn)
	if *benchRole == "server" {
		server, err := smux.Server(conn, benchConfig())
		if err != nil {
			fail("server: %v", err)
		}
		if *benchScenario == "bulk" {
			serveEach(server, func(st *smux.Stream) {
				n, last := bulkRead(st)
				// Printed before the close, which tells the client that this stream is done.
				out("read bytes=%d last_ns=%d", n, last.UnixNano())
				st.Close()
			})
		} else {
			interServe(server)
		}
		select {} // until stdin closes
	}
	client, err := smux.Client(conn, benchConfig())
	if err != nil {
		fail("client: %v", err)
	}
	cpu0 := cpuSeconds()
	var secs float64
	var units int64
	extra := ""
	if *benchScenario == "bulk" {
		k := *benchConns
		per := *benchBytes / int64(k)
		start := time.Now()
		bulkSend(client, k, per)
		secs = time.Since(start).Seconds()
		units = per * int64(k)
		extra = " start_ns=" + strconv.FormatInt(start.UnixNano(), 10)
	} else {
		var lat []time.Duration
		secs, units, lat = interClient(client)
		extra = latencyField(lat)
	}
	cpu := cpuSeconds() - cpu0
	atomic.StoreInt32(&roleDone, 1)
	printResult(secs, units, cpu, extra)
	// The session stays up until stdin closes: the other end may still be reading what
	// was written, and closing the socket with input unread would reset the connection.
	select {}
}

// watchStdin ends the process when stdin closes: status 0 if this is the server or the
// client has printed its result, 1 otherwise.
func watchStdin() {
	io.Copy(io.Discard, os.Stdin)
	if *benchRole == "server" || atomic.LoadInt32(&roleDone) == 1 {
		os.Exit(0)
	}
	fail("-role %s: stdin closed before the result", *benchRole)
}
