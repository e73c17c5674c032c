package runpod

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
	"github.com/runpod-workers/worker-github_runner/internal/retry"
)

// maxProgressQueued is how many progress updates may wait; beyond it the
// newest replaces the last one waiting (progress is a state, not a log).
const maxProgressQueued = 256

// poster sends one job's progress updates and stream chunks, in order,
// then its result; nothing is sent after the result.
//
// Stream chunks are batched. The SDK posts each chunk as {"output": chunk};
// here the chunk of a post is the list of the chunks that came meanwhile,
// {"output": [chunk, ...]}, so a flood of lines takes a few posts, not one
// post a line. A post carries up to
// StreamBatchBytes, and no chunk waits longer than StreamFlush. Chunks that
// would make more than StreamBufferBytes wait are dropped and counted: a
// marker chunk in the stream says how many, and the log says it too.
type poster struct {
	w     *JobLoop
	jobID string
	log   *slog.Logger
	wake  chan struct{}
	done  chan struct{}
	// drain ends StreamDrain after the job (or at once when RunPod
	// cancelled it): posts in flight then give up.
	drain    context.Context
	endDrain context.CancelFunc

	mu       sync.Mutex
	ops      []*op
	buffered int // bytes of stream chunks waiting
	progress int // progress updates waiting
	closed   bool
	drainBy  time.Time // once closed: when what still waits is dropped
	streamed bool
	dropped  drops // dropped and not yet reported in the stream
	total    drops // every chunk dropped
	merged   int   // progress updates replaced by a newer one
}

// op is one post: a progress update, or a batch of stream chunks.
type op struct {
	progress []byte
	chunks   [][]byte
	size     int
	since    time.Time // when the batch's first chunk came
	lines    int       // chunks of the job's (the rest are drop markers)
	reported int       // drops the batch's markers report
}

type drops struct{ chunks, bytes int }

func newPoster(w *JobLoop, jobID string) *poster {
	p := &poster{w: w, jobID: jobID, log: w.log.With("request_id", jobID), wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.drain, p.endDrain = context.WithCancel(context.Background())
	go p.loop()
	return p
}

func (p *poster) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Progress posts {"status": "IN_PROGRESS", "output": v} to the done URL.
func (p *poster) Progress(v any) {
	b, err := json.Marshal(map[string]any{"status": jobapi.InProgress, "output": v})
	if err != nil {
		p.log.Warn("progress update is not JSON: not sent", "error", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.progress >= maxProgressQueued {
		for i := len(p.ops) - 1; i >= 0; i-- {
			if p.ops[i].progress != nil {
				p.ops[i].progress = b
				break
			}
		}
		if p.merged++; p.merged == 1 {
			p.log.Warn("progress updates come faster than RunPod takes them: sending only the newest")
		}
		return
	}
	p.ops = append(p.ops, &op{progress: b})
	p.progress++
	p.signal()
}

// Stream queues a chunk for the job's stream.
func (p *poster) Stream(chunk any) {
	if p.w.cfg.StreamURL == "" {
		return
	}
	b, err := json.Marshal(chunk)
	if err != nil {
		p.log.Warn("stream chunk is not JSON: not sent", "error", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.streamed = true
	if p.buffered+len(b) > p.w.o.StreamBufferBytes {
		if p.dropped.chunks == 0 {
			p.log.Warn("the stream cannot keep up: dropping chunks until RunPod takes the waiting ones", "waiting_bytes", p.buffered)
		}
		p.dropped.chunks++
		p.dropped.bytes += len(b)
		return
	}
	p.reportDrops()
	p.add(b, true)
	p.signal()
}

// reportDrops puts a marker chunk for the drops not yet reported.
func (p *poster) reportDrops() {
	if p.dropped.chunks == 0 {
		return
	}
	m, _ := json.Marshal(fmt.Sprintf("[worker: %d stream chunks dropped (%d bytes): RunPod did not take them fast enough]", p.dropped.chunks, p.dropped.bytes))
	p.add(m, false)
	p.ops[len(p.ops)-1].reported += p.dropped.chunks
	p.total.chunks += p.dropped.chunks
	p.total.bytes += p.dropped.bytes
	p.dropped = drops{}
}

// add appends a chunk to the last batch, or starts a batch.
func (p *poster) add(b []byte, line bool) {
	var last *op
	if n := len(p.ops); n > 0 && p.ops[n-1].progress == nil && p.ops[n-1].size+len(b) <= p.w.o.StreamBatchBytes {
		last = p.ops[n-1]
	} else {
		last = &op{since: time.Now()}
		p.ops = append(p.ops, last)
	}
	last.chunks = append(last.chunks, b)
	last.size += len(b) + 1
	p.buffered += len(b) + 1
	if line {
		last.lines++
	}
}

func (p *poster) loop() {
	defer close(p.done)
	for {
		o := p.next()
		if o == nil {
			return
		}
		p.send(o)
	}
}

// next waits for the next post that is due: a progress update at once; a
// batch when it is full, old enough, followed by something else, or the
// job is done. nil once the poster is closed and drained.
func (p *poster) next() *op {
	for {
		p.mu.Lock()
		p.cutOff()
		if len(p.ops) == 0 && p.closed {
			p.mu.Unlock()
			return nil
		}
		var wait time.Duration = -1
		if len(p.ops) > 0 {
			head := p.ops[0]
			wait = time.Until(head.since.Add(p.w.o.StreamFlush))
			if head.progress != nil || p.closed || len(p.ops) > 1 || head.size >= p.w.o.StreamBatchBytes || wait <= 0 {
				p.ops = p.ops[1:]
				p.buffered -= head.size
				if head.progress != nil {
					p.progress--
				}
				p.mu.Unlock()
				return head
			}
		}
		p.mu.Unlock()
		p.sleep(wait)
	}
}

// sleep waits for a signal, or d when d >= 0.
func (p *poster) sleep(d time.Duration) {
	if d < 0 {
		<-p.wake
		return
	}
	fired, stop := retry.Real.Timer(d)
	defer stop()
	select {
	case <-p.wake:
	case <-fired:
	}
}

// cutOff drops what still waits once the drain time after the job's end
// is over, so the result is not held back by a slow stream; the drops are
// reported in one last marker.
func (p *poster) cutOff() {
	if !p.closed || p.drainBy.IsZero() || time.Now().Before(p.drainBy) {
		return
	}
	p.drainBy = time.Time{}
	for _, o := range p.ops {
		if o.progress == nil {
			p.dropped.chunks += o.lines + o.reported
			p.total.chunks -= o.reported // counted again by reportDrops
			p.dropped.bytes += o.size
		}
	}
	p.ops, p.buffered, p.progress = nil, 0, 0
	p.reportDrops()
}

func (p *poster) send(o *op) {
	ctx, cancel := p.postContext()
	defer cancel()
	if o.progress != nil {
		if status, err := p.w.post(ctx, jobURL(p.w.cfg.DoneURL, p.w.cfg.PodID, p.jobID, false), p.jobID, o.progress); err != nil || status >= 300 {
			p.log.Warn("progress post failed", "status", status, "error", err)
		}
		return
	}
	body := append([]byte(`{"output":[`), bytes.Join(o.chunks, []byte(","))...)
	body = append(body, "]}"...)
	status, err := p.w.post(ctx, jobURL(p.w.cfg.StreamURL, p.w.cfg.PodID, p.jobID, false), p.jobID, body)
	if err == nil && status < 300 {
		return
	}
	p.log.Warn("stream post failed: its chunks are lost", "status", status, "error", err, "chunks", o.lines)
	p.mu.Lock()
	p.dropped.chunks += o.lines + o.reported
	p.total.chunks -= o.reported
	p.dropped.bytes += o.size
	p.mu.Unlock()
}

// postContext bounds a post: 30 s, and no later than the drain time once
// the job is done; past it, the last marker gets a few seconds of its own.
func (p *poster) postContext() (context.Context, context.CancelFunc) {
	if p.drain.Err() != nil {
		return context.WithTimeout(context.Background(), 5*time.Second)
	}
	return context.WithTimeout(p.drain, 30*time.Second)
}

// final sends what waits (within StreamDrain), then the result, and
// closes the poster. stopPod is decided last, right before the post.
func (p *poster) final(body map[string]any) {
	p.mu.Lock()
	p.closed = true
	p.drainBy = time.Now().Add(p.w.o.StreamDrain)
	p.reportDrops()
	p.mu.Unlock()
	drained := time.AfterFunc(p.w.o.StreamDrain, p.endDrain)
	p.signal()
	<-p.done
	drained.Stop()
	p.endDrain()
	p.mu.Lock()
	// Chunks of the last posts, if they failed: only the log can say it.
	p.total.chunks += p.dropped.chunks
	p.total.bytes += p.dropped.bytes
	streamed, total, merged := p.streamed, p.total, p.merged
	p.mu.Unlock()
	if total.chunks > 0 {
		p.log.Warn("stream chunks dropped", "dropped_total", total.chunks, "dropped_bytes", total.bytes)
	}
	if merged > 0 {
		p.log.Info("progress updates replaced by newer ones", "replaced", merged)
	}
	if p.w.answering(p.jobID) {
		body["stopPod"] = true
	}
	p.w.postFinal(p.jobID, streamed, body)
}

// close discards what waits and stops the poster without a result (RunPod
// cancelled the job).
func (p *poster) close() {
	p.mu.Lock()
	p.closed = true
	p.ops, p.buffered, p.progress = nil, 0, 0
	p.mu.Unlock()
	p.endDrain()
	p.signal()
	<-p.done
}
