// Bench mode (-mode bench): the Go side of the end-to-end benchmark in benches/benches/e2e.rs.
// A Go smux server and a Go smux client run in this one process over loopback TCP, both with
// smux.DefaultConfig() and -version, and run one scenario:
//
//	-scenario bulk  -conns K -bytes N  K streams at once, N bytes in all (N/K each), written
//	                                    by the client in 64 KiB writes and read and discarded
//	                                    by the server; units = bytes
//	-scenario rr    -ops N             N times in sequence: open a stream, write 1 byte, read
//	                                    the 1-byte echo, Close; units = ops
//	-scenario popen -ops N -tasks T    pipelined opens: the same N times in all, by T goroutines
//	                                    at once (N/T each, the remainder spread over the first
//	                                    ones), each one open after another; units = N
//	-scenario idle  -ops N             N streams opened (64 openers at once), each carrying a
//	                                    1-byte echo, then all held open by both ends; units = N
//	-scenario pp    -ops N             pingpong: N round trips in sequence on one stream, a
//	                                    1-byte ping and its 1-byte echo; units = N
//	-scenario pp-parked -ops N -parked M  the same beside M idle streams, each established by
//	                                    a 1-byte echo and then with a reader blocked on both
//	                                    ends; only the pingpong is timed
//	-scenario inter ...                 an interactive stream beside bulk downloads, for the
//	                                    link benchmark (link.go, with -via and -lowat)
//
// With -role server or -role client (link.go), only one end of bulk or inter runs here, the
// other end being another peer (the link benchmark's mixed cases).
//
// It prints one line: "result secs=S units=U cpu=C hwm_kib=M", where secs is the wall time of
// the scenario, cpu the user+system CPU seconds the process used meanwhile, and hwm_kib the
// peak resident set size of the process (getrusage ru_maxrss); the inter scenario adds the
// field lat_us.
package main

import (
	"flag"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xtaci/smux"
)

var (
	benchScenario = flag.String("scenario", "bulk", "bench: bulk, rr, popen, idle, pp, pp-parked or inter")
	benchParked   = flag.Int("parked", 1000, "bench pp-parked: idle streams beside the pingpong")
	benchConns    = flag.Int("conns", 1, "bench bulk: streams at once")
	benchBytes    = flag.Int64("bytes", 1<<30, "bench bulk: bytes in all")
	benchOps      = flag.Int("ops", 10000, "bench rr, popen: opens; pp: round trips; idle: streams")
	benchTasks    = flag.Int("tasks", 64, "bench popen: goroutines opening streams at once")
)

const benchChunk = 64 * 1024

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fail("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func peakRSSKiB() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fail("getrusage: %v", err)
	}
	return ru.Maxrss // KiB on Linux
}

// benchPair connects a Go smux client and server over loopback TCP (through the relay of
// -via, if given; with -lowat set on both connections).
func benchPair() (client, server *smux.Session) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			fail("accept: %v", err)
		}
		accepted <- c
	}()
	cc, err := net.Dial("tcp", dialAddr(ln.Addr()))
	if err != nil {
		fail("dial: %v", err)
	}
	sc := <-accepted
	ln.Close()
	setLowat(cc)
	setLowat(sc)
	cfg := benchConfig()
	if server, err = smux.Server(sc, cfg); err != nil {
		fail("server: %v", err)
	}
	if client, err = smux.Client(cc, cfg); err != nil {
		fail("client: %v", err)
	}
	return client, server
}

// benchConfig is the configuration of both ends: smux.DefaultConfig() with -version.
func benchConfig() *smux.Config {
	cfg := smux.DefaultConfig()
	cfg.Version = *version
	if err := smux.VerifyConfig(cfg); err != nil {
		fail("config: %v", err)
	}
	return cfg
}

// serveEach runs handle on every stream the server accepts.
func serveEach(server *smux.Session, handle func(*smux.Stream)) {
	go func() {
		for {
			st, err := server.AcceptStream()
			if err != nil {
				return
			}
			go handle(st)
		}
	}()
}

func runBench() {
	if *benchRole != "" {
		runRole()
		return
	}
	client, server := benchPair()
	var secs float64
	var units int64
	var cpu float64
	extra := ""
	switch *benchScenario {
	case "bulk":
		secs, cpu, units = benchBulk(client, server)
	case "rr":
		secs, cpu, units = benchRR(client, server, 1)
	case "popen":
		secs, cpu, units = benchRR(client, server, *benchTasks)
	case "idle":
		secs, cpu, units = benchIdle(client, server)
	case "pp":
		secs, cpu, units = benchPingPong(client, server, 0)
	case "pp-parked":
		secs, cpu, units = benchPingPong(client, server, *benchParked)
	case "inter":
		var lat []time.Duration
		cpu0 := cpuSeconds()
		secs, units, lat = benchInter(client, server)
		cpu = cpuSeconds() - cpu0
		extra = latencyField(lat)
	default:
		fail("unknown -scenario %q", *benchScenario)
	}
	printResult(secs, units, cpu, extra)
}

// printResult prints the result line; extra holds the fields after hwm_kib (with a leading
// space), if any.
func printResult(secs float64, units int64, cpu float64, extra string) {
	out("result secs=%.6f units=%d cpu=%.3f hwm_kib=%d%s", secs, units, cpu, peakRSSKiB(), extra)
}

func benchBulk(client, server *smux.Session) (float64, float64, int64) {
	k := *benchConns
	per := *benchBytes / int64(k)
	received := make(chan int64, k)
	serveEach(server, func(st *smux.Stream) {
		n, _ := bulkRead(st)
		st.Close()
		received <- n
	})
	cpu0 := cpuSeconds()
	start := time.Now()
	bulkSend(client, k, per)
	var total int64
	for i := 0; i < k; i++ {
		total += <-received
	}
	secs := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	if total != per*int64(k) {
		fail("bulk: server received %d bytes, sent %d", total, per*int64(k))
	}
	return secs, cpu, total
}

// bulkRead is the server's side of a bulk stream: it reads the stream to its end, and returns
// the bytes read and when the last of them came.
func bulkRead(st *smux.Stream) (int64, time.Time) {
	sink := &lastWrite{at: time.Now()}
	n, err := io.Copy(sink, st)
	if err != nil && err != io.EOF { // this smux's WriteTo reports the EOF
		fail("bulk: server read after %d bytes: %v", n, err)
	}
	return n, sink.at
}

// lastWrite discards what is written to it and notes when the last write came.
type lastWrite struct{ at time.Time }

func (w *lastWrite) Write(p []byte) (int, error) {
	w.at = time.Now()
	return len(p), nil
}

// bulkSend is the client's side of bulk: k streams at once, each opened, given per bytes in
// 64 KiB writes and closed. It returns once every write and close returned.
func bulkSend(client *smux.Session, k int, per int64) {
	chunk := make([]byte, benchChunk)
	for i := range chunk {
		chunk[i] = 0x5a
	}
	var wg sync.WaitGroup
	for i := 0; i < k; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := client.OpenStream()
			if err != nil {
				fail("bulk: open: %v", err)
			}
			for left := per; left > 0; {
				n := int64(len(chunk))
				if n > left {
					n = left
				}
				if _, err := st.Write(chunk[:n]); err != nil {
					fail("bulk: write: %v", err)
				}
				left -= n
			}
			st.Close()
		}()
	}
	wg.Wait()
}

// benchRR runs -ops times, by `tasks` goroutines at once (1 for rr), each in sequence: open a
// stream, write 1 byte, read the 1-byte echo, Close. The server reads the byte, writes it
// back, reads to EOF and closes. Timed until every goroutine has closed its last stream.
func benchRR(client, server *smux.Session, tasks int) (float64, float64, int64) {
	serveEach(server, func(st *smux.Stream) {
		defer st.Close()
		b := make([]byte, 1)
		if _, err := io.ReadFull(st, b); err != nil {
			fail("rr: server read: %v", err)
		}
		if _, err := st.Write(b); err != nil {
			fail("rr: server write: %v", err)
		}
		io.Copy(io.Discard, st)
	})
	ops := *benchOps
	if tasks < 1 {
		tasks = 1
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < tasks; w++ {
		count := ops / tasks
		if w < ops%tasks {
			count++
		}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			b := make([]byte, 1)
			for i := 0; i < count; i++ {
				st, err := client.OpenStream()
				if err != nil {
					fail("rr: open: %v", err)
				}
				b[0] = byte(i ^ w)
				if _, err := st.Write(b); err != nil {
					fail("rr: write: %v", err)
				}
				if _, err := io.ReadFull(st, b); err != nil || b[0] != byte(i^w) {
					fail("rr: echo: %v (%d)", err, b[0])
				}
				st.Close()
			}
		}(w)
	}
	wg.Wait()
	return time.Since(start).Seconds(), cpuSeconds() - cpu0, int64(ops)
}

var benchHeld struct {
	sync.Mutex
	streams []*smux.Stream
}

func benchIdle(client, server *smux.Session) (float64, float64, int64) {
	n := *benchOps
	var held int64
	allHeld := make(chan struct{})
	serveEach(server, func(st *smux.Stream) {
		b := make([]byte, 1)
		if _, err := io.ReadFull(st, b); err != nil {
			fail("idle: server read: %v", err)
		}
		if _, err := st.Write(b); err != nil {
			fail("idle: server write: %v", err)
		}
		benchHeld.Lock()
		benchHeld.streams = append(benchHeld.streams, st)
		benchHeld.Unlock()
		if atomic.AddInt64(&held, 1) == int64(n) {
			close(allHeld)
		}
	})
	const openers = 64
	cpu0 := cpuSeconds()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < openers; w++ {
		count := n / openers
		if w < n%openers {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]*smux.Stream, 0, count)
			b := make([]byte, 1)
			for i := 0; i < count; i++ {
				st, err := client.OpenStream()
				if err != nil {
					fail("idle: open: %v", err)
				}
				if _, err := st.Write(b); err != nil {
					fail("idle: write: %v", err)
				}
				if _, err := io.ReadFull(st, b); err != nil {
					fail("idle: echo: %v", err)
				}
				mine = append(mine, st)
			}
			benchHeld.Lock()
			benchHeld.streams = append(benchHeld.streams, mine...)
			benchHeld.Unlock()
		}()
	}
	wg.Wait()
	if n > 0 {
		<-allHeld
	}
	secs := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	if got := client.NumStreams(); got != n {
		fail("idle: the client holds %d streams, want %d", got, n)
	}
	return secs, cpu, int64(n)
}

// echoBytes echoes a stream byte by byte until it ends.
func echoBytes(st *smux.Stream) {
	defer st.Close()
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(st, b); err != nil {
			return
		}
		if _, err := st.Write(b); err != nil {
			return
		}
	}
}

// benchPingPong opens `parked` idle streams (a 1-byte echo each, then a reader blocked on
// both ends) and then times -ops round trips of a 1-byte ping on one more stream.
func benchPingPong(client, server *smux.Session, parked int) (float64, float64, int64) {
	serveEach(server, echoBytes)
	b := make([]byte, 1)
	for i := 0; i < parked; i++ {
		st, err := client.OpenStream()
		if err != nil {
			fail("pp: open idle: %v", err)
		}
		if _, err := st.Write(b); err != nil {
			fail("pp: idle write: %v", err)
		}
		if _, err := io.ReadFull(st, b); err != nil {
			fail("pp: idle echo: %v", err)
		}
		go func() {
			buf := make([]byte, 1)
			st.Read(buf)
		}()
	}
	st, err := client.OpenStream()
	if err != nil {
		fail("pp: open: %v", err)
	}
	ops := *benchOps
	cpu0 := cpuSeconds()
	start := time.Now()
	for i := 0; i < ops; i++ {
		b[0] = byte(i)
		if _, err := st.Write(b); err != nil {
			fail("pp: write: %v", err)
		}
		if _, err := io.ReadFull(st, b); err != nil || b[0] != byte(i) {
			fail("pp: echo: %v (%d)", err, b[0])
		}
	}
	return time.Since(start).Seconds(), cpuSeconds() - cpu0, int64(ops)
}
