package runpod

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/jobapi"
)

// RunTestInput runs one job locally, as the SDK's --test_input does: src is
// a job object ({"input": {...}}, the id defaults to "local_test"). The
// result is printed as JSON; the return value is the exit code: 0 on
// success, 1 on failure or missing input.
func RunTestInput(ctx context.Context, h Handler, src []byte, out io.Writer, log *slog.Logger) int {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(src, &fields); err != nil {
		fmt.Fprintf(out, "{\"error\": %q}\n", "test input is not a JSON object: "+err.Error())
		return 1
	}
	if _, ok := fields["id"]; !ok {
		fields["id"] = json.RawMessage(`"local_test"`)
	}
	b, _ := json.Marshal(fields)
	job, bad := parseJob(b)
	if bad != nil {
		fmt.Fprintf(out, "{\"error\": %q}\n", "test input: "+bad.reason)
		return 1
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log.Info("running test input", "request_id", job.ID)
	res, err := safeHandle(ctx, h, job, printUpdater{out})
	var body map[string]any
	code := 0
	if err != nil {
		body, code = map[string]any{"error": localErrorText(err)}, 1
	} else {
		body = map[string]any{"output": res}
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		fmt.Fprintf(out, "{\"error\": %q}\n", "output is not JSON: "+err.Error())
		return 1
	}
	return code
}

type printUpdater struct{ w io.Writer }

func (p printUpdater) Progress(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(p.w, "progress: %s\n", b)
}

func (p printUpdater) Stream(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(p.w, "stream: %s\n", b)
}

// localErrorText is a job's error in local mode; an unfit host's has the
// JSON form it has on the platform.
func localErrorText(err error) string {
	var unfit *UnfitError
	if errors.As(err, &unfit) {
		return unfitText(err, unfit, os.Getenv("RUNPOD_POD_HOSTNAME"), cmp.Or(os.Getenv("RUNPOD_POD_ID"), "local"))
	}
	return clip(err.Error(), maxErrorBytes)
}

func safeHandle(ctx context.Context, h Handler, job *Job, u Updater) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h.Handle(ctx, job, u)
}

// APIServer is the local stand-in for a RunPod endpoint (--rp_serve_api):
// POST /run, /runsync, GET|POST /status/{id}, /stream/{id}, POST
// /cancel/{id}, GET /health, with the platform's shapes and statuses. It
// answers the same under RunPod's paths, /v2/{endpoint}/run and so on, for
// any endpoint id: a client pointed at http://host:port/v2 as it would be
// at https://api.runpod.ai/v2 reaches it.
type APIServer struct {
	h    Handler
	log  *slog.Logger
	sem  chan struct{}
	mux  *http.ServeMux
	mu   sync.Mutex
	jobs map[string]*localJob
	seq  int
}

type localJob struct {
	id       string
	status   jobapi.Status
	output   any
	err      string
	stream   []any
	queued   time.Time
	started  time.Time
	finished time.Time
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewAPIServer runs at most concurrency jobs at once (at least 1).
func NewAPIServer(h Handler, concurrency int, log *slog.Logger) *APIServer {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &APIServer{h: h, log: log, sem: make(chan struct{}, max(concurrency, 1)), jobs: map[string]*localJob{}, mux: http.NewServeMux()}
	for _, prefix := range []string{"", "/v2/{endpoint}"} {
		s.mux.HandleFunc("POST "+prefix+"/run", func(w http.ResponseWriter, r *http.Request) { s.submit(w, r, false) })
		s.mux.HandleFunc("POST "+prefix+"/runsync", func(w http.ResponseWriter, r *http.Request) { s.submit(w, r, true) })
		s.mux.HandleFunc(prefix+"/status/{id}", s.status)
		s.mux.HandleFunc(prefix+"/stream/{id}", s.streamStatus)
		s.mux.HandleFunc("POST "+prefix+"/cancel/{id}", s.cancel)
		s.mux.HandleFunc("GET "+prefix+"/health", s.health)
	}
	return s
}

// Serve listens on host:port until ctx ends.
func (s *APIServer) Serve(ctx context.Context, host string, port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	s.log.Info("local RunPod API listening", "addr", "http://"+ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeHTTP routes the endpoint API.
func (s *APIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *APIServer) submit(w http.ResponseWriter, r *http.Request, sync bool) {
	var req map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, 20<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, jobapi.ErrorAnswer{Error: "body must be a JSON object: " + err.Error()})
		return
	}
	if in, ok := req["input"]; !ok || string(in) == "null" {
		writeJSON(w, http.StatusBadRequest, jobapi.ErrorAnswer{Error: "missing input"})
		return
	}
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("local-%d-%d", time.Now().UnixNano(), s.seq)
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	j := &localJob{id: id, status: jobapi.InQueue, queued: time.Now(), cancel: cancel, done: make(chan struct{})}
	s.jobs[id] = j
	s.mu.Unlock()
	req["id"], _ = json.Marshal(id)
	b, _ := json.Marshal(req)
	job, _ := parseJob(b)
	go s.execute(ctx, j, job)
	if !sync {
		writeJSON(w, http.StatusOK, jobapi.Job{ID: id, Status: jobapi.InQueue})
		return
	}
	select {
	case <-j.done:
	case <-r.Context().Done():
		return
	}
	s.status(w, r.WithContext(context.WithValue(r.Context(), idKey{}, id)))
}

type idKey struct{}

func (s *APIServer) execute(ctx context.Context, j *localJob, job *Job) {
	defer close(j.done)
	defer j.cancel()
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-s.sem }()
	s.mu.Lock()
	if j.status == jobapi.Cancelled {
		s.mu.Unlock()
		return
	}
	j.status, j.started = jobapi.InProgress, time.Now()
	s.mu.Unlock()
	out, err := safeHandle(ctx, s.h, job, localUpdater{s, j})
	s.mu.Lock()
	defer s.mu.Unlock()
	j.finished = time.Now()
	switch {
	case j.status == jobapi.Cancelled:
	case err != nil:
		j.status, j.err = jobapi.Failed, localErrorText(err)
	default:
		j.status, j.output = jobapi.Completed, out
	}
}

type localUpdater struct {
	s *APIServer
	j *localJob
}

func (u localUpdater) Progress(v any) {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	if u.j.status == jobapi.InProgress {
		u.j.output = v
	}
}

func (u localUpdater) Stream(v any) {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	u.j.stream = append(u.j.stream, v)
}

// lookup finds the request's job, answering 404 when there is none.
func (s *APIServer) lookup(w http.ResponseWriter, r *http.Request) *localJob {
	id, _ := r.Context().Value(idKey{}).(string)
	if id == "" {
		id = r.PathValue("id")
	}
	s.mu.Lock()
	j := s.jobs[id]
	s.mu.Unlock()
	if j == nil {
		writeJSON(w, http.StatusNotFound, jobapi.ErrorAnswer{Error: "job not found"})
	}
	return j
}

func (s *APIServer) status(w http.ResponseWriter, r *http.Request) {
	j := s.lookup(w, r)
	if j == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	body := jobapi.Job{ID: j.id, Status: j.status, WorkerID: "local", Output: j.output, Error: j.err}
	if !j.started.IsZero() {
		body.DelayTime = ms(j.started.Sub(j.queued))
	}
	if !j.finished.IsZero() {
		body.ExecutionTime = ms(j.finished.Sub(j.started))
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *APIServer) streamStatus(w http.ResponseWriter, r *http.Request) {
	j := s.lookup(w, r)
	if j == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	chunks := make([]jobapi.StreamChunk, 0, len(j.stream))
	for _, c := range j.stream {
		chunks = append(chunks, jobapi.StreamChunk{Output: c})
	}
	j.stream = nil
	writeJSON(w, http.StatusOK, jobapi.StreamAnswer{ID: j.id, Status: j.status, Stream: chunks})
}

func (s *APIServer) cancel(w http.ResponseWriter, r *http.Request) {
	j := s.lookup(w, r)
	if j == nil {
		return
	}
	s.mu.Lock()
	if j.status == jobapi.InQueue || j.status == jobapi.InProgress {
		j.status = jobapi.Cancelled
		j.cancel()
	}
	st := j.status
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, jobapi.Job{ID: j.id, Status: st})
}

func (s *APIServer) health(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var h jobapi.Health
	for _, j := range s.jobs {
		h.Jobs.Count(j.status)
	}
	h.Workers.Running = h.Jobs.InProgress
	h.Workers.Idle = cap(s.sem) - h.Workers.Running
	writeJSON(w, http.StatusOK, h)
}

func ms(d time.Duration) *int64 {
	n := d.Milliseconds()
	return &n
}
