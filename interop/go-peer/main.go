// Command go-peer is the Go side of the smux-rs interoperability tests: a peer built on Go's
// own github.com/xtaci/smux (the Debian package, built in GOPATH mode), driven by flags.
//
// Modes:
//
//	-mode server   listen on -addr (127.0.0.1:0 picks a port; printed as "listening ADDR"),
//	               accept one connection and run a smux server session on it
//	-mode client   connect to -addr and run a smux client session on it
//	-mode vectors  write the bytes Go smux itself puts on the wire for every command, both
//	               versions, into files under -out (golden vectors); no network
//	-mode bench    a Go smux client and server in this process run one benchmark scenario
//	               (bench.go; used by benches/benches/e2e.rs and link.rs), or with -role
//	               only one end of it against another peer (link.go)
//
// In server and client mode the session does two things at once:
//
//   - Acceptor: every stream the peer opens is echoed (read until EOF, write back, Close), or
//     with -sink read until EOF and reported as "sink SID LEN FNV" (and "accepted SID" when
//     accepted).
//   - Opener: -streams N streams are opened concurrently; each writes a random payload (sizes
//     from -sizes or from -seed), reads the echo back and checks its FNV-1a checksum, then
//     closes the stream. With -abort the opener only writes, reports "sent SID LEN FNV" per
//     stream, and then closes the whole session without closing the streams. With -greet
//     each stream first reads and checks the peer's greeting ("hello SID\n"), as the client
//     of a server that speaks first does.
//
// -odd makes every write (opener and echo) go out in odd-sized pieces (1, 3, 7, ... 131073
// bytes), and reads use odd buffer sizes too. -slow leaves one stream unread: the first stream
// accepted is held and never read, and the first stream opened never reads its echo.
//
// -workload replaces the opener and the acceptor by one of the client workloads of workload.go
// (request/response, a burst of pipelined opens, idle streams beside busy ones, an interactive
// stream beside bulk ones); -serial makes the acceptor handle one stream at a time (see
// workload.go).
//
// The run ends when the opener is done and the peer ended the session (accept fails), or,
// with -close, when the opener is done and -expect streams of the peer were echoed: then Go
// closes the session itself. The last line on stdout is "summary key=value ..."; exit status 0
// means every check passed. Failures are reported on stderr as "FAIL: ..." with status 1.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"
)

var (
	mode         = flag.String("mode", "server", "server, client, vectors or bench")
	addr         = flag.String("addr", "127.0.0.1:0", "server: address to listen on; client: address to connect to")
	version      = flag.Int("version", 1, "smux protocol version, 1 or 2")
	kaInterval   = flag.Int("keepalive-interval", 10000, "keepalive interval in ms")
	kaTimeout    = flag.Int("keepalive-timeout", 30000, "keepalive timeout in ms")
	kaOff        = flag.Bool("keepalive-off", false, "disable keepalive")
	maxFrame     = flag.Int("max-frame", 32768, "MaxFrameSize")
	maxRecv      = flag.Int("max-receive-buffer", 4194304, "MaxReceiveBuffer")
	maxStreamBuf = flag.Int("max-stream-buffer", 65536, "MaxStreamBuffer")
	streams      = flag.Int("streams", 0, "streams to open toward the peer")
	expect       = flag.Int("expect", 0, "with -close: streams the peer opens that must be echoed before closing")
	sizesFlag    = flag.String("sizes", "", "payload sizes, comma separated, cycled over the streams (default: random from -seed)")
	seed         = flag.Int64("seed", 1, "seed for random sizes and payloads")
	maxSize      = flag.Int("max-size", 3<<20+7, "size of the largest random payload (stream 0)")
	odd          = flag.Bool("odd", false, "write and read in odd-sized pieces")
	slow         = flag.Bool("slow", false, "leave one stream unread (first accepted, first opened)")
	slowBytes    = flag.Int("slow-bytes", 1<<20, "bytes written on the slow opened stream")
	sink         = flag.Bool("sink", false, "accepted streams are read to EOF and reported instead of echoed")
	abort        = flag.Bool("abort", false, "opener only writes, then closes the session without closing its streams")
	closeDone    = flag.Bool("close", false, "close the session when the opener is done and -expect streams were echoed")
	idleMs       = flag.Int("idle", 0, "ms to stay idle before opening streams (keepalive check)")
	greet        = flag.Bool("greet", false, "opener: read the peer's greeting (see greeting) before writing")
	deadlineMs   = flag.Int("deadline", 60000, "fail if the run takes longer than this many ms")
	outDir       = flag.String("out", "", "vectors: directory to write the files into")
)

// Odd piece sizes for -odd: small ones, ones around the 32 KiB frame size, and ones beyond the
// largest frame, so writes never line up with frames.
var oddSizes = []int{1, 3, 7, 31, 509, 4093, 32771, 65537, 131073, 1048583}

var outMu sync.Mutex

func out(format string, args ...interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

func fail(format string, args ...interface{}) {
	outMu.Lock()
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func fnv64(data []byte) uint64 {
	h := fnv.New64a()
	h.Write(data)
	return h.Sum64()
}

// payload is the deterministic content of opened stream idx.
func payload(idx, size int) []byte {
	data := make([]byte, size)
	rand.New(rand.NewSource(*seed*1000003 + int64(idx))).Read(data)
	return data
}

// sizes gives the payload size of every opened stream.
func sizes(n int) []int {
	res := make([]int, n)
	if *sizesFlag != "" {
		var list []int
		for _, s := range strings.Split(*sizesFlag, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || v < 0 {
				fail("bad -sizes entry %q", s)
			}
			list = append(list, v)
		}
		for i := range res {
			res[i] = list[i%len(list)]
		}
		return res
	}
	r := rand.New(rand.NewSource(*seed))
	for i := range res {
		switch {
		case i == 0:
			res[i] = *maxSize
		case i == 1:
			res[i] = 1
		default:
			p := r.Intn(100)
			switch {
			case p < 85:
				res[i] = 1 + r.Intn(16384)
			case p < 98:
				res[i] = 1 + r.Intn(262144)
			default:
				res[i] = 1 + r.Intn(1<<20)
			}
		}
	}
	return res
}

// pieces cycles through the odd sizes (or gives whole buffers without -odd).
type pieces struct{ i int }

func (p *pieces) next(limit int) int {
	if !*odd {
		return limit
	}
	n := oddSizes[p.i%len(oddSizes)]
	p.i++
	if n > limit {
		n = limit
	}
	return n
}

// writeAll writes data to w, in odd pieces with -odd.
func writeAll(w io.Writer, data []byte, p *pieces) error {
	for len(data) > 0 {
		n := p.next(len(data))
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func config() *smux.Config {
	cfg := smux.DefaultConfig()
	cfg.Version = *version
	cfg.KeepAliveDisabled = *kaOff
	cfg.KeepAliveInterval = time.Duration(*kaInterval) * time.Millisecond
	cfg.KeepAliveTimeout = time.Duration(*kaTimeout) * time.Millisecond
	cfg.MaxFrameSize = *maxFrame
	cfg.MaxReceiveBuffer = *maxRecv
	cfg.MaxStreamBuffer = *maxStreamBuf
	if err := smux.VerifyConfig(cfg); err != nil {
		fail("config: %v", err)
	}
	return cfg
}

func main() {
	flag.Parse()
	deadline := time.Duration(*deadlineMs) * time.Millisecond
	time.AfterFunc(deadline, func() { fail("deadline of %v exceeded", deadline) })

	var conn net.Conn
	var err error
	switch *mode {
	case "vectors":
		writeVectors()
		return
	case "bench":
		runBench()
		return
	case "server":
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			fail("listen: %v", err)
		}
		out("listening %s", ln.Addr())
		conn, err = ln.Accept()
		if err != nil {
			fail("accept: %v", err)
		}
		ln.Close()
	case "client":
		conn, err = net.Dial("tcp", *addr)
		if err != nil {
			fail("dial: %v", err)
		}
	default:
		fail("unknown -mode %q", *mode)
	}

	lc := &lingerConn{TCPConn: conn.(*net.TCPConn), eof: make(chan struct{})}
	var sess *smux.Session
	if *mode == "server" {
		sess, err = smux.Server(lc, config())
	} else {
		sess, err = smux.Client(lc, config())
	}
	if err != nil {
		fail("session: %v", err)
	}
	if *workload != "" {
		runWorkload(sess)
	} else {
		run(sess)
	}
	lc.linger(20 * time.Second)
}

// lingerConn is the TCP connection under the session. Go smux closes a session by closing the
// socket; with unread input (a NOP, an UPD of the peer) that resets the connection and may
// destroy data the peer has not read yet, which is TCP's doing, not smux's. So Close only
// sends FIN after all written data (CloseWrite), and the socket is closed once the peer
// closed its end too (the session's reader keeps reading until then).
type lingerConn struct {
	*net.TCPConn
	eof     chan struct{}
	eofOnce sync.Once
}

func (c *lingerConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if err != nil {
		c.eofOnce.Do(func() { close(c.eof) })
	}
	return n, err
}

func (c *lingerConn) Close() error {
	return c.TCPConn.CloseWrite()
}

// linger waits (at most d) for the peer to close its end, then closes the socket.
func (c *lingerConn) linger(d time.Duration) {
	select {
	case <-c.eof:
	case <-time.After(d):
		fmt.Fprintf(os.Stderr, "the peer did not close the connection within %v\n", d)
	}
	c.TCPConn.Close()
}

// Acceptor counters.
var (
	accepted    int64
	echoedBytes int64
	echoFails   int64
	held        []*smux.Stream // slow streams, kept referenced and unread
	heldMu      sync.Mutex
)

func run(sess *smux.Session) {
	var echoWG sync.WaitGroup
	echoDone := make(chan struct{}, 1<<16)
	acceptEnd := make(chan error, 1)
	go func() {
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				acceptEnd <- err
				return
			}
			n := atomic.AddInt64(&accepted, 1)
			if *sink {
				out("accepted %d", st.ID())
			}
			if *slow && n == 1 {
				heldMu.Lock()
				held = append(held, st)
				heldMu.Unlock()
				out("slow accepted %d", st.ID())
				continue
			}
			if *serial {
				// Handled to its end before the next accept (workload.go).
				var err error
				if *framed {
					err = serveFramed(st)
				} else {
					err = echoStream(st)
				}
				if err != nil {
					atomic.AddInt64(&echoFails, 1)
					fmt.Fprintf(os.Stderr, "acceptor: stream %d: %v\n", st.ID(), err)
				}
				echoDone <- struct{}{}
				continue
			}
			echoWG.Add(1)
			go func() {
				defer echoWG.Done()
				var err error
				if *sink {
					err = sinkStream(st)
				} else {
					err = echoStream(st)
				}
				if err != nil {
					atomic.AddInt64(&echoFails, 1)
					fmt.Fprintf(os.Stderr, "acceptor: stream %d: %v\n", st.ID(), err)
				}
				echoDone <- struct{}{}
			}()
		}
	}()

	if *idleMs > 0 {
		time.Sleep(time.Duration(*idleMs) * time.Millisecond)
		if sess.IsClosed() {
			fail("session closed while idle for %d ms (keepalive timeout?)", *idleMs)
		}
		out("idle-ok %d", *idleMs)
	}

	if *abort {
		runAbort(sess)
		return
	}

	opened, openedBytes := runOpener(sess)

	var end error
	if *closeDone {
		want := *expect
		if *slow && want > 0 {
			want-- // the held stream is never echoed
		}
		for i := 0; i < want; i++ {
			select {
			case <-echoDone:
			case err := <-acceptEnd:
				fail("session ended after %d of %d expected streams: %v", i, want, err)
			}
		}
		echoWG.Wait()
		sess.Close()
		end = <-acceptEnd
	} else {
		end = <-acceptEnd
		echoWG.Wait()
	}
	endName := "closed-by-us"
	if !*closeDone {
		endName = describe(end)
	}
	summary := fmt.Sprintf("summary opened=%d opened_bytes=%d accepted=%d echoed_bytes=%d echo_fails=%d end=%s",
		opened, openedBytes, atomic.LoadInt64(&accepted), atomic.LoadInt64(&echoedBytes),
		atomic.LoadInt64(&echoFails), endName)
	out("%s", summary)
	if atomic.LoadInt64(&echoFails) > 0 {
		fail("%d accepted streams failed", atomic.LoadInt64(&echoFails))
	}
}

// describe names the error that ended the accept loop, for the summary line.
func describe(err error) string {
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, io.ErrClosedPipe):
		return "closed-pipe"
	case errors.Is(err, smux.ErrInvalidProtocol):
		return "invalid-protocol"
	default:
		return strings.ReplaceAll(err.Error(), " ", "_")
	}
}

// echoStream echoes st until EOF, then closes it.
func echoStream(st *smux.Stream) error {
	defer st.Close()
	if !*odd {
		n, err := io.Copy(st, st)
		atomic.AddInt64(&echoedBytes, n)
		if err != nil && err != io.EOF {
			return fmt.Errorf("after %d bytes: %v", n, err)
		}
		return nil
	}
	buf := make([]byte, 1<<20+8)
	var rp, wp pieces
	wp.i = 3
	total := 0
	for {
		n, err := st.Read(buf[:rp.next(len(buf))])
		if n > 0 {
			if werr := writeAll(st, buf[:n], &wp); werr != nil {
				return fmt.Errorf("write after %d bytes: %v", total, werr)
			}
			total += n
			atomic.AddInt64(&echoedBytes, int64(n))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read after %d bytes: %v", total, err)
		}
	}
}

// sinkStream reads st until EOF and reports what it got.
func sinkStream(st *smux.Stream) error {
	defer st.Close()
	h := fnv.New64a()
	buf := make([]byte, 1<<20+8)
	var rp pieces
	total := 0
	for {
		n, err := st.Read(buf[:rp.next(len(buf))])
		h.Write(buf[:n])
		total += n
		if err == io.EOF {
			atomic.AddInt64(&echoedBytes, int64(total))
			out("sink %d %d %016x", st.ID(), total, h.Sum64())
			return nil
		}
		if err != nil {
			return fmt.Errorf("read after %d bytes: %v", total, err)
		}
	}
}

// runOpener opens the streams, echo-checks them all and returns (streams checked, bytes).
func runOpener(sess *smux.Session) (int, int64) {
	if *streams == 0 {
		return 0, 0
	}
	sz := sizes(*streams)
	var wg sync.WaitGroup
	var fails, checked, bytes int64
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if *slow && i == 0 {
				if err := openSlow(sess); err != nil {
					atomic.AddInt64(&fails, 1)
					fmt.Fprintf(os.Stderr, "opener: slow stream: %v\n", err)
				}
				return
			}
			if err := openEcho(sess, i, sz[i]); err != nil {
				atomic.AddInt64(&fails, 1)
				fmt.Fprintf(os.Stderr, "opener: stream #%d (%d bytes): %v\n", i, sz[i], err)
				return
			}
			atomic.AddInt64(&checked, 1)
			atomic.AddInt64(&bytes, int64(sz[i]))
		}(i)
		if *slow && i == 0 {
			// Open the slow stream first, so that the peer sees it before the others.
			wg.Wait()
		}
	}
	wg.Wait()
	if fails > 0 {
		fail("%d of %d opened streams failed", fails, *streams)
	}
	out("opener-done %d %d", checked, bytes)
	return int(checked), bytes
}

// openSlow opens a stream, writes -slow-bytes in the background and never reads the echo.
func openSlow(sess *smux.Session) error {
	st, err := sess.OpenStream()
	if err != nil {
		return err
	}
	heldMu.Lock()
	held = append(held, st)
	heldMu.Unlock()
	// Make sure the SYN and some data are out before the other streams open.
	if _, err := st.Write([]byte{0x5a}); err != nil {
		return err
	}
	go func() {
		var p pieces
		writeAll(st, payload(-1, *slowBytes), &p) // blocks once the peer's window is full
	}()
	out("slow opened %d", st.ID())
	return nil
}

// openEcho opens a stream, writes size bytes while reading the echo back, and checks it.
func openEcho(sess *smux.Session, idx, size int) error {
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("open: %v", err)
	}
	defer st.Close()
	if *greet {
		want := greeting(st.ID())
		got := make([]byte, len(want))
		if n, err := io.ReadFull(st, got); err != nil {
			return fmt.Errorf("stream %d: greeting ended after %d of %d bytes: %v", st.ID(), n, len(want), err)
		}
		if string(got) != want {
			return fmt.Errorf("stream %d: greeting %q, want %q", st.ID(), got, want)
		}
	}
	data := payload(idx, size)
	want := fnv64(data)
	werr := make(chan error, 1)
	go func() {
		var p pieces
		p.i = idx
		werr <- writeAll(st, data, &p)
	}()
	h := fnv.New64a()
	bufLen := 1<<20 + 8
	if size+8 < bufLen {
		bufLen = size + 8 // thousands of small streams: do not allocate 1 MiB each
	}
	buf := make([]byte, bufLen)
	var rp pieces
	rp.i = idx + 5
	got := 0
	for got < size {
		limit := size - got
		if limit > len(buf) {
			limit = len(buf)
		}
		n, err := st.Read(buf[:rp.next(limit)])
		h.Write(buf[:n])
		got += n
		if err != nil && got < size {
			return fmt.Errorf("stream %d: echo ended after %d of %d bytes: %v", st.ID(), got, size, err)
		}
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("stream %d: write: %v", st.ID(), err)
	}
	if sum := h.Sum64(); sum != want {
		return fmt.Errorf("stream %d: echo checksum %016x, sent %016x (%d bytes)", st.ID(), sum, want, size)
	}
	return nil
}

// greeting is what the peer writes first on a stream we open, with -greet (a server that
// speaks first, as SSH or SMTP do): "hello <stream id>\n".
func greeting(id uint32) string {
	return fmt.Sprintf("hello %d\n", id)
}

// runAbort writes every payload without reading or closing the streams, then closes the
// session: the peer sees its streams end without FIN.
func runAbort(sess *smux.Session) {
	sz := sizes(*streams)
	var wg sync.WaitGroup
	var fails, total int64
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st, err := sess.OpenStream()
			if err != nil {
				atomic.AddInt64(&fails, 1)
				fmt.Fprintf(os.Stderr, "abort: open: %v\n", err)
				return
			}
			heldMu.Lock()
			held = append(held, st)
			heldMu.Unlock()
			data := payload(i, sz[i])
			p := pieces{i: i}
			if err := writeAll(st, data, &p); err != nil {
				atomic.AddInt64(&fails, 1)
				fmt.Fprintf(os.Stderr, "abort: stream %d: write: %v\n", st.ID(), err)
				return
			}
			atomic.AddInt64(&total, int64(sz[i]))
			out("sent %d %d %016x", st.ID(), sz[i], fnv64(data))
		}(i)
	}
	wg.Wait()
	if fails > 0 {
		fail("%d of %d streams failed", fails, *streams)
	}
	sess.Close()
	out("summary opened=%d opened_bytes=%d accepted=%d echoed_bytes=0 echo_fails=0 end=aborted-by-us",
		*streams, total, atomic.LoadInt64(&accepted))
}

// ------------------------------------------------------------------------------------------
// Golden vectors

// recConn records what a session writes and plays a scripted input to it.
type recConn struct {
	mu     sync.Mutex
	in     []byte
	out    []byte
	closed chan struct{}
	once   sync.Once
}

func newRecConn(in []byte) *recConn {
	return &recConn{in: in, closed: make(chan struct{})}
}

func (c *recConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.in) > 0 {
		n := copy(p, c.in)
		c.in = c.in[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	<-c.closed
	return 0, io.EOF
}

func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	c.out = append(c.out, p...)
	return len(p), nil
}

func (c *recConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *recConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.out...)
}

// pattern is the payload of the large vector writes: byte i is (31*i + 7) mod 251.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((31*i + 7) % 251)
	}
	return b
}

// rawFrame encodes a frame by hand, for scripted input.
func rawFrame(ver, cmd byte, sid uint32, data []byte) []byte {
	b := make([]byte, 8+len(data))
	b[0] = ver
	b[1] = cmd
	binary.LittleEndian.PutUint16(b[2:], uint16(len(data)))
	binary.LittleEndian.PutUint32(b[4:], sid)
	copy(b[8:], data)
	return b
}

func vectorConfig(ver int) *smux.Config {
	cfg := smux.DefaultConfig()
	cfg.Version = ver
	cfg.KeepAliveDisabled = true
	return cfg
}

func must(err error, what string) {
	if err != nil {
		fail("vectors: %s: %v", what, err)
	}
}

func writeFile(name string, data []byte) {
	path := filepath.Join(*outDir, name)
	must(os.WriteFile(path, data, 0o644), "write "+path)
	out("wrote %s %d", name, len(data))
}

func writeVectors() {
	if *outDir == "" {
		fail("vectors: -out is required")
	}
	must(os.MkdirAll(*outDir, 0o755), "mkdir")
	for _, ver := range []int{1, 2} {
		writeFile(fmt.Sprintf("v%d_client.bin", ver), clientVector(ver, 32768, 33000))
		input, output := serverVector(ver)
		writeFile(fmt.Sprintf("v%d_server_input.bin", ver), input)
		writeFile(fmt.Sprintf("v%d_server.bin", ver), output)
		writeFile(fmt.Sprintf("v%d_nop.bin", ver), nopVector(ver))
	}
	writeFile("v1_maxframe.bin", maxFrameVector())
}

// clientVector: a client opens stream 3 and writes "hello", opens stream 5 and writes
// `big` pattern bytes (split into frames of at most frameSize), closes 3, closes 5.
func clientVector(ver, frameSize, big int) []byte {
	conn := newRecConn(nil)
	cfg := vectorConfig(ver)
	cfg.MaxFrameSize = frameSize
	sess, err := smux.Client(conn, cfg)
	must(err, "client")
	s3, err := sess.OpenStream()
	must(err, "open 3")
	_, err = s3.Write([]byte("hello"))
	must(err, "write 3")
	s5, err := sess.OpenStream()
	must(err, "open 5")
	_, err = s5.Write(pattern(big))
	must(err, "write 5")
	must(s3.Close(), "close 3")
	must(s5.Close(), "close 5")
	data := conn.written()
	sess.Close()
	return data
}

// maxFrameVector: version 1 with MaxFrameSize 65535: stream 3 writes 65536 pattern bytes
// (frames of 65535 and 1 bytes) and closes.
func maxFrameVector() []byte {
	conn := newRecConn(nil)
	cfg := vectorConfig(1)
	cfg.MaxFrameSize = 65535
	sess, err := smux.Client(conn, cfg)
	must(err, "client")
	s3, err := sess.OpenStream()
	must(err, "open")
	_, err = s3.Write(pattern(65536))
	must(err, "write")
	must(s3.Close(), "close")
	data := conn.written()
	sess.Close()
	return data
}

// serverVector: the peer sends SYN 3 and PSH 3 "hello"; the server accepts stream 3, reads
// the 5 bytes (version 2: UPD consumed=5 window=65536), writes "world", opens stream 2, writes
// "hi" on it, closes 2, closes 3.
func serverVector(ver int) (input, output []byte) {
	v := byte(ver)
	input = append(rawFrame(v, 0, 3, nil), rawFrame(v, 2, 3, []byte("hello"))...)
	conn := newRecConn(append([]byte(nil), input...))
	sess, err := smux.Server(conn, vectorConfig(ver))
	must(err, "server")
	s3, err := sess.AcceptStream()
	must(err, "accept")
	buf := make([]byte, 5)
	_, err = io.ReadFull(s3, buf)
	must(err, "read")
	if string(buf) != "hello" {
		fail("vectors: read %q", buf)
	}
	_, err = s3.Write([]byte("world"))
	must(err, "write 3")
	s2, err := sess.OpenStream()
	must(err, "open 2")
	_, err = s2.Write([]byte("hi"))
	must(err, "write 2")
	must(s2.Close(), "close 2")
	must(s3.Close(), "close 3")
	output = conn.written()
	sess.Close()
	return input, output
}

// nopVector: the first frame of an idle session with a 10 ms keepalive interval.
func nopVector(ver int) []byte {
	conn := newRecConn(nil)
	cfg := smux.DefaultConfig()
	cfg.Version = ver
	cfg.KeepAliveInterval = 10 * time.Millisecond
	cfg.KeepAliveTimeout = time.Hour
	sess, err := smux.Client(conn, cfg)
	must(err, "client")
	defer sess.Close()
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(time.Millisecond) {
		if data := conn.written(); len(data) >= 8 {
			return data[:8]
		}
	}
	fail("vectors: no NOP within 5 s")
	return nil
}
