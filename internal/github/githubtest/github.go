// Package githubtest is a fake GitHub REST API for self-hosted runners: JIT
// configs, registration tokens, runner listing, lookup and removal, runner
// groups, for organisations, repositories and enterprises, at / (github.com)
// and /api/v3/ (GitHub Enterprise Server). It keeps the runners it
// registered, removes an ephemeral runner when its job completes (as GitHub
// does), answers 422 when deleting a busy runner and 409 for a duplicate
// name, and can inject failures. Installation tokens expire (after
// InstallationTokenTTL; 401 then), and in GHES mode the API is only at
// /api/v3/ (406 elsewhere).
//
// A fake runner reaches it through the URLs in its JIT config or .runner
// file: POST /_fake/register (token mode; a duplicate name is 409 unless
// the body says "replace": true, as config.sh --replace, which takes the
// existing runner over), POST /_fake/runners/{id}/job
// (a job starts: 202 while none it can take is queued, see QueueJob) and
// POST /_fake/runners/{id}/done (the job ended).
package githubtest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// RegisteredRunner is a registered runner.
type RegisteredRunner struct {
	ID        int64    `json:"id"`
	Name      string   `json:"name"`
	Labels    []string `json:"labels"`
	Scope     string   `json:"-"`
	GroupID   int64    `json:"-"`
	Status    string   `json:"status"`
	Busy      bool     `json:"busy"`
	Ephemeral bool     `json:"ephemeral"`
}

// MarshalJSON writes a runner as GitHub does: labels are objects.
func (r RegisteredRunner) MarshalJSON() ([]byte, error) {
	labels := []map[string]any{}
	for i, l := range r.Labels {
		labels = append(labels, map[string]any{"id": i + 1, "name": l, "type": "read-only"})
	}
	return json.Marshal(map[string]any{"id": r.ID, "name": r.Name, "os": "linux", "status": r.Status, "busy": r.Busy, "ephemeral": r.Ephemeral, "labels": labels})
}

// Request is a recorded API call.
type Request struct {
	Method, Path, Auth string
	Query              string // the raw query (page=2, name=...)
	Body               map[string]any
	At                 time.Time // when it arrived
}

// Fault is an injected answer for the next matching request.
type Fault struct {
	// Match is a substring of "METHOD /path"; empty matches anything.
	Match  string
	Status int
	// RateLimit makes a 403 (or Status: 429, which GitHub sends too) look
	// like GitHub's primary rate limit: X-RateLimit-Remaining: 0, reset
	// after Reset (default one second).
	RateLimit bool
	Reset     time.Duration
	// Secondary answers 403 (or Status: 429) as GitHub's secondary rate
	// limit does when it sends neither Retry-After nor a reset: the body
	// and documentation_url GitHub uses, which go-github recognises.
	Secondary bool
	// Message replaces the body's message of a Status answer (a 422 that
	// is a validation failure, not a busy runner).
	Message string
	// RetryAfter adds a Retry-After header (seconds) to a 403 (or Status)
	// whose body is not go-github's secondary-limit shape: GitHub's rule
	// is that the header alone says "wait this long".
	RetryAfter int
	// Delay holds the request this long, then handles it normally (or as
	// Lost says). Like GitHub, the fake finishes a request whose client
	// gave up: a slow registration still registers.
	Delay time.Duration
	// Lost handles the request (a runner gets registered), then answers
	// Status (default 502) instead: the answer is lost on the way.
	Lost bool
	// Times repeats the fault for that many matching requests (default 1);
	// a 500 storm is Times: 1000.
	Times int
}

// GitHub is the fake. Create it with New.
type GitHub struct {
	*httptest.Server
	// Tokens are the accepted credentials.
	Tokens map[string]bool

	mu       sync.Mutex
	runners  map[int64]*RegisteredRunner
	ever     []RegisteredRunner // every runner registered, as registered
	jobs     []*WorkflowJob     // queued with QueueJob
	nextID   int64
	regToks  map[string]string // registration token -> scope
	faults   []Fault
	issued   []string // JIT configs and registration tokens handed out
	requests []Request
	groups   map[string]int64
	// AppKey, when set, makes POST /app/installations/{id}/access_tokens
	// mint tokens for JWTs signed by this key for app AppID.
	AppKey *rsa.PublicKey
	AppID  string
	// IgnoreNameFilter lists every runner whatever ?name= says, as GitHub
	// Enterprise Server versions without the filter do.
	IgnoreNameFilter bool
	// RateRemaining, when positive, is sent as X-RateLimit-Remaining (of
	// a 5000 limit) with every answer.
	RateRemaining int
	// InstallationTokenTTL is how long an installation token minted by
	// the app endpoint is valid (default one hour, as GitHub's); an
	// expired one gets 401 "Bad credentials".
	InstallationTokenTTL time.Duration
	// GHES makes the fake a GitHub Enterprise Server: the API is only at
	// /api/v3/, and a request without the prefix gets 406 (the real
	// server answers its web UI there).
	GHES    bool
	expires map[string]time.Time // installation token -> expiry
	// JITExtraLabels are labels the fake adds to a JIT runner besides
	// those asked for. GitHub adds none (a JIT runner has exactly the
	// labels of its request); a test sets some to play a GitHub that did.
	JITExtraLabels []string
	// After, when set, is called after each request was answered, with
	// its method and path (without /api/v3): a test changes GitHub's
	// state between two calls with it.
	After func(method, path string)
}

// New starts a fake GitHub that accepts token.
func New(token string) *GitHub {
	g := &GitHub{Tokens: map[string]bool{token: true}, runners: map[int64]*RegisteredRunner{}, nextID: 100, regToks: map[string]string{}, expires: map[string]time.Time{}, groups: map[string]int64{"Default": 1, "gpu-runners": 7}}
	g.Server = httptest.NewServer(http.HandlerFunc(g.serve))
	return g
}

// Fail queues injected failures, consumed in order by matching requests.
func (g *GitHub) Fail(fs ...Fault) {
	g.mu.Lock()
	g.faults = append(g.faults, fs...)
	g.mu.Unlock()
}

// Runners lists the registered runners, sorted by id.
func (g *GitHub) Runners() []RegisteredRunner {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []RegisteredRunner
	for _, r := range g.runners {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Issued returns every JIT config and registration token handed out:
// secrets that must never appear in logs or output.
func (g *GitHub) Issued() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string{}, g.issued...)
}

// Requests returns the recorded API calls.
func (g *GitHub) Requests() []Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Request{}, g.requests...)
}

// Registered lists every runner ever registered (JIT or config.sh), as
// it was registered: labels included, also of runners since removed.
func (g *GitHub) Registered() []RegisteredRunner {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]RegisteredRunner{}, g.ever...)
}

// Runner returns a registered runner by id.
func (g *GitHub) Runner(id int64) (RegisteredRunner, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.runners[id]; r != nil {
		return *r, true
	}
	return RegisteredRunner{}, false
}

// CanAssign applies GitHub's matching rule for self-hosted runners: a job
// whose runs-on lists these labels can go to a runner only when every one
// of them is among the runner's labels (case-insensitively). The runner
// is looked up among every runner ever registered, so a test can ask
// after it was removed.
func (g *GitHub) CanAssign(runsOn []string, runnerID int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	var labels []string
	for _, r := range g.ever {
		if r.ID == runnerID {
			labels = r.Labels
		}
	}
	return matches(runsOn, labels)
}

// WorkflowJob is a queued workflow job: what its runs-on lists, and the
// runner it went to (0 while it waits).
type WorkflowJob struct {
	Name     string
	RunsOn   []string
	RunnerID int64
	Done     bool
}

// QueueJob queues a workflow job whose runs-on lists these labels. Once a
// job is queued, a fake runner asking for work (POST
// /_fake/runners/{id}/job) gets the first waiting job it can take by
// GitHub's rule (CanAssign), else 202 (nothing yet); before any job is
// queued, every runner gets a job at once.
func (g *GitHub) QueueJob(name string, runsOn ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.jobs = append(g.jobs, &WorkflowJob{Name: name, RunsOn: runsOn})
}

// Jobs returns the queued workflow jobs as they stand.
func (g *GitHub) Jobs() []WorkflowJob {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []WorkflowJob
	for _, j := range g.jobs {
		out = append(out, *j)
	}
	return out
}

// assign gives rn the first waiting job it can take; g.mu is held.
func (g *GitHub) assign(rn *RegisteredRunner) bool {
	if g.jobs == nil {
		return true
	}
	for _, j := range g.jobs {
		if j.RunnerID == 0 && matches(j.RunsOn, rn.Labels) {
			j.RunnerID = rn.ID
			return true
		}
	}
	return false
}

// matches is GitHub's rule: every runs-on label is among the runner's
// labels, case-insensitively.
func matches(runsOn, labels []string) bool {
	if len(runsOn) == 0 {
		return false
	}
	for _, want := range runsOn {
		if !slices.ContainsFunc(labels, func(l string) bool { return strings.EqualFold(l, want) }) {
			return false
		}
	}
	return true
}

// AddRunner registers an offline runner directly (a leftover, say).
func (g *GitHub) AddRunner(scope, name string, labels ...string) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nextID++
	g.runners[g.nextID] = &RegisteredRunner{ID: g.nextID, Name: name, Labels: labels, Scope: scope, Status: "offline"}
	g.ever = append(g.ever, *g.runners[g.nextID])
	return g.nextID
}

// SetRunner sets a runner's status ("online", "offline") and busy flag.
func (g *GitHub) SetRunner(id int64, status string, busy bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.runners[id]; r != nil {
		r.Status, r.Busy = status, busy
	}
}

// Client is an HTTP client that reaches the fake in-process, whatever the
// URL's scheme and host: tests can use https URLs (the worker sends
// credentials over https only) and run inside testing/synctest bubbles.
// As over a network, a request whose context ends returns at once while
// the fake goes on handling it.
func (g *GitHub) Client() *http.Client {
	return &http.Client{Transport: inProcess{g}}
}

type inProcess struct{ g *GitHub }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	served := req.Clone(context.WithoutCancel(req.Context()))
	served.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.g.serve(rec, served)
	}()
	select {
	case <-done:
		resp := rec.Result()
		resp.Request = req
		return resp, nil
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// SecondaryRateLimitDocs is the documentation_url of GitHub's secondary
// rate-limit answers.
const SecondaryRateLimitDocs = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"

func ghError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"message": msg, "documentation_url": "https://docs.github.com/rest"})
}

// scopeOf splits /orgs/o/..., /repos/o/r/..., /enterprises/e/... into the
// scope ("o", "o/r", "enterprises/e") and the rest.
func scopeOf(parts []string) (scope string, rest []string, ok bool) {
	switch {
	case len(parts) >= 2 && parts[0] == "orgs":
		return parts[1], parts[2:], true
	case len(parts) >= 3 && parts[0] == "repos":
		return parts[1] + "/" + parts[2], parts[3:], true
	case len(parts) >= 2 && parts[0] == "enterprises":
		return "enterprises/" + parts[1], parts[2:], true
	}
	return "", nil, false
}

func (g *GitHub) serve(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/api/v3")
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	json.Unmarshal(raw, &body)
	auth := r.Header.Get("Authorization")

	g.mu.Lock()
	g.requests = append(g.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: auth, Body: body, At: time.Now()})
	f, faulty := g.takeFault(r.Method + " " + path)
	after, remaining := g.After, g.RateRemaining
	g.mu.Unlock()
	if after != nil {
		defer after(r.Method, path)
	}
	if remaining > 0 {
		w.Header().Set("X-RateLimit-Limit", "5000")
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
	}
	if !faulty {
		g.handle(w, r, path, auth, body)
		return
	}
	if f.Delay > 0 {
		time.Sleep(f.Delay)
	}
	switch {
	case f.Lost:
		g.handle(httptest.NewRecorder(), r, path, auth, body)
		ghError(w, cmp.Or(f.Status, 502), "Bad Gateway")
	case f.RateLimit:
		w.Header().Set("X-RateLimit-Limit", "5000")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(cmp.Or(f.Reset, time.Second)).Unix(), 10))
		ghError(w, cmp.Or(f.Status, 403), "API rate limit exceeded")
	case f.Secondary:
		writeJSON(w, cmp.Or(f.Status, 403), map[string]any{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
			"documentation_url": SecondaryRateLimitDocs})
	case f.RetryAfter > 0:
		w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		ghError(w, cmp.Or(f.Status, 403), "You have exceeded a secondary rate limit")
	case f.Status != 0:
		ghError(w, f.Status, cmp.Or(f.Message, "injected failure"))
	default: // a delay alone
		g.handle(w, r, path, auth, body)
	}
}

// takeFault consumes the first fault matching op; g.mu is held.
func (g *GitHub) takeFault(op string) (Fault, bool) {
	for i, f := range g.faults {
		if f.Match == "" || strings.Contains(op, f.Match) {
			if f.Times <= 1 {
				g.faults = append(g.faults[:i], g.faults[i+1:]...)
			} else {
				g.faults[i].Times--
			}
			return f, true
		}
	}
	return Fault{}, false
}

// handle answers a request as GitHub would.
func (g *GitHub) handle(w http.ResponseWriter, r *http.Request, path, auth string, body map[string]any) {
	ghes := strings.HasPrefix(r.URL.Path, "/api/v3/")
	if r.Method == "POST" && strings.HasPrefix(path, "/app/installations/") && strings.HasSuffix(path, "/access_tokens") {
		if g.GHES && !ghes {
			ghError(w, 406, "Not Acceptable: the API is at /api/v3/")
			return
		}
		g.appToken(w, r)
		return
	}
	if strings.HasPrefix(path, "/_fake/") {
		g.fake(w, r, strings.Split(strings.Trim(path, "/"), "/")[1:], body)
		return
	}
	if g.GHES && !ghes {
		ghError(w, 406, "Not Acceptable: the API is at /api/v3/")
		return
	}
	if !g.validToken(auth) {
		ghError(w, 401, "Bad credentials")
		return
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	scope, rest, ok := scopeOf(parts)
	if !ok || len(rest) < 2 || rest[0] != "actions" {
		ghError(w, 404, "Not Found")
		return
	}
	key := strings.Join(rest[1:], "/")
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case r.Method == "POST" && key == "runners/generate-jitconfig":
		name, _ := body["name"].(string)
		gid, _ := body["runner_group_id"].(float64)
		var labels []string
		if ls, ok := body["labels"].([]any); ok {
			for _, l := range ls {
				s, _ := l.(string)
				labels = append(labels, s)
			}
		}
		if name == "" || gid == 0 || len(labels) == 0 || len(labels) > 100 {
			ghError(w, 422, "name, runner_group_id and 1 to 100 labels are required")
			return
		}
		for _, x := range g.runners {
			if x.Scope == scope && x.Name == name {
				ghError(w, 409, "Already exists - A runner with the name "+name+" already exists.")
				return
			}
		}
		g.nextID++
		labels = append(labels, g.JITExtraLabels...)
		rn := &RegisteredRunner{ID: g.nextID, Name: name, Labels: labels, Scope: scope, GroupID: int64(gid), Status: "offline", Ephemeral: true}
		g.runners[rn.ID] = rn
		g.ever = append(g.ever, *rn)
		jit := g.encodeJIT(rn, scope)
		g.issued = append(g.issued, jit)
		writeJSON(w, 201, map[string]any{"runner": rn, "encoded_jit_config": jit})
	case r.Method == "POST" && key == "runners/registration-token":
		tok := fmt.Sprintf("AREGTOKEN%d%d", time.Now().UnixNano(), len(g.regToks))
		g.regToks[tok] = scope
		g.issued = append(g.issued, tok)
		writeJSON(w, 201, map[string]any{"token": tok, "expires_at": time.Now().Add(time.Hour).Format(time.RFC3339)})
	case r.Method == "POST" && key == "runners/remove-token":
		writeJSON(w, 201, map[string]any{"token": "AREMOVETOKEN", "expires_at": time.Now().Add(time.Hour).Format(time.RFC3339)})
	case r.Method == "GET" && key == "runners":
		name := r.URL.Query().Get("name")
		list := []*RegisteredRunner{}
		for _, x := range g.runners {
			if x.Scope == scope && (name == "" || x.Name == name || g.IgnoreNameFilter) {
				list = append(list, x)
			}
		}
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
		writeJSON(w, 200, map[string]any{"total_count": len(list), "runners": page(w, r, list)})
	case r.Method == "GET" && key == "runner-groups":
		var gs []map[string]any
		for n, id := range g.groups {
			gs = append(gs, map[string]any{"id": id, "name": n})
		}
		sort.Slice(gs, func(i, j int) bool { return gs[i]["id"].(int64) < gs[j]["id"].(int64) })
		writeJSON(w, 200, map[string]any{"total_count": len(gs), "runner_groups": gs})
	case strings.HasPrefix(key, "runners/"):
		id, err := strconv.ParseInt(strings.TrimPrefix(key, "runners/"), 10, 64)
		rn := g.runners[id]
		if err != nil || rn == nil || rn.Scope != scope {
			ghError(w, 404, "Not Found")
			return
		}
		switch r.Method {
		case "GET":
			writeJSON(w, 200, rn)
		case "DELETE":
			if rn.Busy {
				ghError(w, 422, "Bad request - Runner \""+rn.Name+"\" is still running a job\"")
				return
			}
			delete(g.runners, id)
			w.WriteHeader(204)
		default:
			ghError(w, 405, "method not allowed")
		}
	default:
		ghError(w, 404, "Not Found")
	}
}

// page cuts list as GitHub paginates (per_page default 30, at most 100;
// page from 1) and sets the Link header go-github follows.
func page[T any](w http.ResponseWriter, r *http.Request, list []T) []T {
	q := r.URL.Query()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 30
	}
	per = min(per, 100)
	n, _ := strconv.Atoi(q.Get("page"))
	n = max(n, 1)
	from := min((n-1)*per, len(list))
	to := min(from+per, len(list))
	if to < len(list) {
		next := *r.URL
		q.Set("page", strconv.Itoa(n+1))
		next.RawQuery = q.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<http://%s%s>; rel="next"`, r.Host, next.RequestURI()))
	}
	return list[from:to]
}

func (g *GitHub) appToken(w http.ResponseWriter, r *http.Request) {
	if g.AppKey == nil {
		ghError(w, 404, "Not Found")
		return
	}
	iss, err := verifyAppJWT(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), g.AppKey)
	if err != nil || iss != g.AppID {
		ghError(w, 401, "A JSON web token could not be decoded")
		return
	}
	tok := fmt.Sprintf("ghs_INSTALLATION%d", time.Now().UnixNano())
	g.mu.Lock()
	exp := time.Now().Add(cmp.Or(g.InstallationTokenTTL, time.Hour))
	g.Tokens[tok] = true
	g.expires[tok] = exp
	g.issued = append(g.issued, tok)
	g.mu.Unlock()
	writeJSON(w, 201, map[string]any{"token": tok, "expires_at": exp.UTC().Format(time.RFC3339)})
}

// validToken reports whether auth carries an accepted credential that has
// not expired.
func (g *GitHub) validToken(auth string) bool {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	g.mu.Lock()
	defer g.mu.Unlock()
	exp, expires := g.expires[tok]
	return ok && g.Tokens[tok] && (!expires || time.Now().Before(exp))
}

// verifyAppJWT checks an app's JWT as GitHub does, with an implementation
// independent of the worker's (golang-jwt): RS256 signed by the app's key,
// issued in the past, expiring at most ten minutes after it was issued.
// It returns the issuer (the app id).
func verifyAppJWT(token string, key *rsa.PublicKey) (string, error) {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if err != nil {
		return "", err
	}
	if claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 10*time.Minute {
		return "", errors.New("the JWT must say when it was issued and live at most ten minutes")
	}
	return claims.Issuer, nil
}

// encodeJIT builds a config shaped like GitHub's: base64 of a JSON map from
// file name (.runner, .credentials, .credentials_rsaparams) to the base64
// of that file.
func (g *GitHub) encodeJIT(rn *RegisteredRunner, scope string) string {
	runner, _ := json.Marshal(map[string]any{
		"agentId": rn.ID, "agentName": rn.Name, "poolId": rn.GroupID, "serverUrl": g.URL + "/_services/pipelines",
		"gitHubUrl": g.URL + "/" + scope, "workFolder": "_work", "ephemeral": true, "fakeApi": g.URL,
	})
	creds, _ := json.Marshal(map[string]any{"scheme": "OAuthAccessToken", "data": map[string]string{"clientId": fmt.Sprint(rn.ID)}})
	files := map[string]string{
		".runner":                base64.StdEncoding.EncodeToString(runner),
		".credentials":           base64.StdEncoding.EncodeToString(creds),
		".credentials_rsaparams": base64.StdEncoding.EncodeToString([]byte(`{"d":"fake"}`)),
	}
	b, _ := json.Marshal(files)
	return base64.StdEncoding.EncodeToString(b)
}

// fake serves the endpoints a fake runner uses.
func (g *GitHub) fake(w http.ResponseWriter, r *http.Request, parts []string, body map[string]any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case len(parts) == 1 && parts[0] == "register":
		tok, _ := body["token"].(string)
		scope, ok := g.regToks[tok]
		if !ok {
			ghError(w, 401, "invalid registration token")
			return
		}
		delete(g.regToks, tok) // one use
		name, _ := body["name"].(string)
		replace, _ := body["replace"].(bool)
		var labels []string
		if ls, ok := body["labels"].([]any); ok {
			for _, l := range ls {
				s, _ := l.(string)
				labels = append(labels, s)
			}
		}
		rn := &RegisteredRunner{Name: name, Labels: labels, Scope: scope, GroupID: 1, Status: "offline", Ephemeral: true}
		for _, x := range g.runners {
			if x.Scope == scope && x.Name == name && !replace {
				ghError(w, 409, "runner exists")
				return
			}
			if x.Scope == scope && x.Name == name {
				rn.ID = x.ID // config.sh --replace takes the existing agent over: same id
			}
		}
		if rn.ID == 0 {
			g.nextID++
			rn.ID = g.nextID
		}
		g.runners[rn.ID] = rn
		g.ever = append(g.ever, *rn)
		writeJSON(w, 201, map[string]any{"id": rn.ID, "scope": scope})
	case len(parts) == 3 && parts[0] == "runners":
		id, _ := strconv.ParseInt(parts[1], 10, 64)
		rn := g.runners[id]
		if rn == nil {
			ghError(w, 404, "runner gone")
			return
		}
		switch parts[2] {
		case "online":
			rn.Status = "online"
		case "job":
			if !g.assign(rn) {
				w.WriteHeader(http.StatusAccepted) // no job for it yet
				return
			}
			rn.Busy = true
		case "done":
			for _, j := range g.jobs {
				if j.RunnerID == rn.ID {
					j.Done = true
				}
			}
			rn.Busy = false
			if rn.Ephemeral {
				delete(g.runners, id) // GitHub removes an ephemeral runner after its job
			}
		}
		w.WriteHeader(204)
	default:
		ghError(w, 404, "Not Found")
	}
}
