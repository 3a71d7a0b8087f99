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
)

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

// benchInter runs the inter scenario (see the top of this file). It returns the length of
// the measurement, the bulk bytes read meanwhile and every round trip.
func benchInter(client, server *smux.Session) (float64, int64, []time.Duration) {
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
