// Workloads of the workload matrix (interop/tests/workloads.rs): client-side traffic shapes
// that Go's smux opens toward our server, and the serial ("slow") acceptor.
//
// -workload selects the opener (client or server mode; the acceptor is not run):
//
//	reqresp  -streams N streams at once, each sends -requests sequential requests of 1 to
//	         -req-max bytes and reads each echo back (exactly the request's length) before the
//	         next request; then Close.
//	burst    -streams N streams opened back to back by one goroutine, each given a framed
//	         request (4-byte little-endian length, then 1 to -req-max bytes) without waiting;
//	         a goroutine per stream reads the reply (the payload, echoed) and then closes.
//	idle     -streams N idle streams: each writes one byte and reads its echo, then sits idle;
//	         meanwhile -busy streams echo -busy-size bytes each (writing in odd pieces while
//	         reading). When the busy ones are done, every idle stream echoes 100 more bytes and
//	         closes.
//	interactive  one interactive stream beside -busy bulk streams: the interactive stream is
//	         opened first and completes one exchange (a request of 1 to -req-max bytes, its echo
//	         read back) before the bulk streams open, so the peer accepts it first. Then each
//	         bulk stream echoes rounds of its -busy-size payload (each round announced by a
//	         byte: 1, a round follows; 0, the end; odd pieces with -odd, writing while reading,
//	         the echo checked) while the interactive stream goes on exchanging requests one
//	         after the other; once it made -requests exchanges the bulk streams end after their
//	         round, and it exchanges on until they are done; then it closes. Also prints
//	         "interactive exchanges=K slowest_us=U". Bytes: everything echoed and checked.
//
// Every reply is compared byte for byte. The session is closed at the end, and the last line
// is "summary workload=NAME streams=N bytes=B fails=F" (bytes: payload bytes checked).
//
// -serial makes the acceptor (the normal server and client modes) handle each stream to its
// end before accepting the next. With -framed it reads one framed request (see burst) instead
// of echoing until EOF, writes the payload back and closes the stream.
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"
)

var (
	workload = flag.String("workload", "", "opener workload: reqresp, burst, idle or interactive (see workload.go)")
	serial   = flag.Bool("serial", false, "acceptor: handle each stream to its end before accepting the next")
	framed   = flag.Bool("framed", false, "acceptor: each stream carries one framed request (length, payload); echo it and close")
	requests = flag.Int("requests", 100, "reqresp: requests per stream; interactive: fewest exchanges")
	reqMax   = flag.Int("req-max", 512, "reqresp, burst, interactive: largest request")
	busy     = flag.Int("busy", 0, "idle: busy streams; interactive: bulk streams")
	busySize = flag.Int("busy-size", 1<<20, "idle: bytes echoed on each busy stream; interactive: bytes per round of a bulk stream")
	openers  = flag.Int("openers", 1, "burst: goroutines opening streams at once (each opens its share back to back)")
)

// Workload counters.
var wlFails, wlStreams, wlBytes int64

func wlFail(format string, args ...interface{}) {
	atomic.AddInt64(&wlFails, 1)
	fmt.Fprintf(os.Stderr, "workload: "+format+"\n", args...)
}

// exchange writes req on st and reads len(req) bytes back, which must equal it.
func exchange(st *smux.Stream, req, buf []byte) error {
	if _, err := st.Write(req); err != nil {
		return fmt.Errorf("write %d bytes: %v", len(req), err)
	}
	got := buf[:len(req)]
	if n, err := io.ReadFull(st, got); err != nil {
		return fmt.Errorf("reply ended after %d of %d bytes: %v", n, len(req), err)
	}
	if !bytes.Equal(got, req) {
		return fmt.Errorf("reply of %d bytes differs from the request", len(req))
	}
	atomic.AddInt64(&wlBytes, int64(len(req)))
	return nil
}

func runWorkload(sess *smux.Session) {
	switch *workload {
	case "reqresp":
		workReqResp(sess)
	case "burst":
		workBurst(sess)
	case "idle":
		workIdle(sess)
	case "interactive":
		workInteractive(sess)
	default:
		fail("unknown -workload %q", *workload)
	}
	sess.Close()
	out("summary workload=%s streams=%d bytes=%d fails=%d", *workload,
		atomic.LoadInt64(&wlStreams), atomic.LoadInt64(&wlBytes), atomic.LoadInt64(&wlFails))
	if atomic.LoadInt64(&wlFails) > 0 {
		fail("%d workload failures", atomic.LoadInt64(&wlFails))
	}
}

func workReqResp(sess *smux.Session) {
	var wg sync.WaitGroup
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st, err := sess.OpenStream()
			if err != nil {
				wlFail("open #%d: %v", i, err)
				return
			}
			defer st.Close()
			r := rand.New(rand.NewSource(*seed*7919 + int64(i)))
			buf := make([]byte, *reqMax)
			for k := 0; k < *requests; k++ {
				req := make([]byte, 1+r.Intn(*reqMax))
				r.Read(req)
				if err := exchange(st, req, buf); err != nil {
					wlFail("stream %d request %d: %v", st.ID(), k, err)
					return
				}
			}
			atomic.AddInt64(&wlStreams, 1)
		}(i)
	}
	wg.Wait()
}

// framedRequest is a 4-byte little-endian length followed by the payload.
func framedRequest(payload []byte) []byte {
	req := make([]byte, 4+len(payload))
	binary.LittleEndian.PutUint32(req, uint32(len(payload)))
	copy(req[4:], payload)
	return req
}

func workBurst(sess *smux.Session) {
	var wg sync.WaitGroup
	var openWG sync.WaitGroup
	for o := 0; o < *openers; o++ {
		openWG.Add(1)
		go func(o int) {
			defer openWG.Done()
			r := rand.New(rand.NewSource(*seed + int64(o)))
			for i := o; i < *streams; i += *openers {
				burstOne(sess, r, i, &wg)
			}
		}(o)
	}
	openWG.Wait()
	wg.Wait()
}

// burstOne opens a stream, writes its framed request and starts a goroutine reading the reply.
func burstOne(sess *smux.Session, r *rand.Rand, i int, wg *sync.WaitGroup) {
	st, err := sess.OpenStream()
	if err != nil {
		wlFail("open #%d: %v", i, err)
		return
	}
	payload := make([]byte, 1+r.Intn(*reqMax))
	r.Read(payload)
	if _, err := st.Write(framedRequest(payload)); err != nil {
		wlFail("stream %d: write: %v", st.ID(), err)
		st.Close()
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer st.Close()
		got := make([]byte, len(payload))
		if n, err := io.ReadFull(st, got); err != nil {
			wlFail("stream %d: reply ended after %d of %d bytes: %v", st.ID(), n, len(payload), err)
			return
		}
		if !bytes.Equal(got, payload) {
			wlFail("stream %d: reply of %d bytes differs from the request", st.ID(), len(payload))
			return
		}
		atomic.AddInt64(&wlBytes, int64(len(payload)))
		atomic.AddInt64(&wlStreams, 1)
	}()
}

func workIdle(sess *smux.Session) {
	idle := make([]*smux.Stream, 0, *streams)
	buf := make([]byte, 128)
	for i := 0; i < *streams; i++ {
		st, err := sess.OpenStream()
		if err != nil {
			wlFail("open idle #%d: %v", i, err)
			return
		}
		idle = append(idle, st)
		if err := exchange(st, []byte{byte(i)}, buf); err != nil {
			wlFail("idle stream %d: first byte: %v", st.ID(), err)
			return
		}
	}
	out("idle-open %d", len(idle))

	var wg sync.WaitGroup
	for i := 0; i < *busy; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := openEcho(sess, i, *busySize); err != nil {
				wlFail("busy #%d: %v", i, err)
				return
			}
			atomic.AddInt64(&wlStreams, 1)
			atomic.AddInt64(&wlBytes, int64(*busySize))
		}(i)
	}
	wg.Wait()

	for i, st := range idle {
		wg.Add(1)
		go func(i int, st *smux.Stream) {
			defer wg.Done()
			defer st.Close()
			req := make([]byte, 100)
			rand.New(rand.NewSource(int64(i))).Read(req)
			if err := exchange(st, req, make([]byte, 100)); err != nil {
				wlFail("idle stream %d: at the end: %v", st.ID(), err)
				return
			}
			atomic.AddInt64(&wlStreams, 1)
		}(i, st)
	}
	wg.Wait()
}

func workInteractive(sess *smux.Session) {
	st, err := sess.OpenStream()
	if err != nil {
		wlFail("open the interactive stream: %v", err)
		return
	}
	defer st.Close()
	r := rand.New(rand.NewSource(*seed))
	buf := make([]byte, *reqMax)
	var slowest time.Duration
	k := 0
	exchangeOne := func() bool {
		req := make([]byte, 1+r.Intn(*reqMax))
		r.Read(req)
		start := time.Now()
		if err := exchange(st, req, buf); err != nil {
			wlFail("interactive stream %d, exchange %d: %v", st.ID(), k, err)
			return false
		}
		if d := time.Since(start); d > slowest {
			slowest = d
		}
		k++
		return true
	}
	// The first exchange before the bulk streams open: the peer accepts this stream first.
	if !exchangeOne() {
		return
	}

	var wg sync.WaitGroup
	var bulkDone, stop int32
	for i := 0; i < *busy; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			n, err := bulkEcho(sess, i, *busySize, &stop)
			if err != nil {
				wlFail("bulk #%d: %v", i, err)
				return
			}
			atomic.AddInt64(&wlStreams, 1)
			atomic.AddInt64(&wlBytes, n)
		}(i)
	}
	go func() {
		wg.Wait()
		atomic.StoreInt32(&bulkDone, 1)
	}()
	ok := true
	for ok {
		if k >= *requests {
			atomic.StoreInt32(&stop, 1)
			if atomic.LoadInt32(&bulkDone) == 1 {
				break
			}
		}
		ok = exchangeOne()
	}
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	if ok {
		atomic.AddInt64(&wlStreams, 1)
	}
	out("interactive exchanges=%d slowest_us=%d", k, slowest.Microseconds())
}

// bulkEcho opens a stream and echoes rounds of a size-byte payload on it until *stop (at least
// one round; see workInteractive), reading and checking the echo while writing. Returns the
// bytes echoed and checked, round bytes included.
func bulkEcho(sess *smux.Session, idx, size int, stop *int32) (int64, error) {
	st, err := sess.OpenStream()
	if err != nil {
		return 0, fmt.Errorf("open: %v", err)
	}
	defer st.Close()
	data := payload(idx, size)
	werr := make(chan error, 1)
	go func() {
		var p pieces
		p.i = idx
		for round := 0; ; round++ {
			more := round == 0 || atomic.LoadInt32(stop) == 0
			head := []byte{0}
			if more {
				head[0] = 1
			}
			if _, err := st.Write(head); err != nil {
				werr <- fmt.Errorf("round %d: %v", round, err)
				return
			}
			if !more {
				werr <- nil
				return
			}
			if err := writeAll(st, data, &p); err != nil {
				werr <- fmt.Errorf("round %d: %v", round, err)
				return
			}
		}
	}()
	buf := make([]byte, size+8)
	var rp pieces
	rp.i = idx + 5
	var total int64
	for round := 0; ; round++ {
		var head [1]byte
		if _, err := io.ReadFull(st, head[:]); err != nil {
			return total, fmt.Errorf("stream %d: the byte before round %d: %v", st.ID(), round, err)
		}
		total++
		if head[0] == 0 {
			break
		}
		if head[0] != 1 {
			return total, fmt.Errorf("stream %d: the byte before round %d is %d", st.ID(), round, head[0])
		}
		for got := 0; got < size; {
			n, err := st.Read(buf[:rp.next(size-got)])
			if !bytes.Equal(buf[:n], data[got:got+n]) {
				return total, fmt.Errorf("stream %d: round %d: echo differs after byte %d", st.ID(), round, got)
			}
			got += n
			if err != nil && got < size {
				return total, fmt.Errorf("stream %d: round %d: echo ended after %d of %d bytes: %v", st.ID(), round, got, size, err)
			}
		}
		total += int64(size)
	}
	if err := <-werr; err != nil {
		return total, fmt.Errorf("stream %d: write: %v", st.ID(), err)
	}
	return total, nil
}

// serveFramed reads one framed request from st, echoes its payload and closes the stream.
func serveFramed(st *smux.Stream) error {
	defer st.Close()
	var head [4]byte
	if _, err := io.ReadFull(st, head[:]); err != nil {
		return fmt.Errorf("request header: %v", err)
	}
	payload := make([]byte, binary.LittleEndian.Uint32(head[:]))
	if n, err := io.ReadFull(st, payload); err != nil {
		return fmt.Errorf("request ended after %d of %d bytes: %v", n, len(payload), err)
	}
	if _, err := st.Write(payload); err != nil {
		return fmt.Errorf("reply: %v", err)
	}
	atomic.AddInt64(&echoedBytes, int64(len(payload)))
	return nil
}
