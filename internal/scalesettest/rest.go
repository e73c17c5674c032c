package scalesettest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The GitHub REST API's self-hosted runner calls, as the scaler's orphan
// reconcile makes them (internal/github's client).
const (
	OpRESTListRunners  Op = "rest-list-runners"  // GET /{scope}/actions/runners
	OpRESTRemoveRunner Op = "rest-remove-runner" // DELETE /{scope}/actions/runners/{id}
)

// restScope reads the scope of a REST runners path: repos/o/r, orgs/o or
// enterprises/e, then actions/runners[/id]. It returns the rest after
// actions/runners ("" or the id).
func restScope(parts []string) (rest string, ok bool) {
	n := 2
	if len(parts) > 0 && parts[0] == "repos" {
		n = 3
	}
	if len(parts) < n+2 || !slices.Contains([]string{"repos", "orgs", "enterprises"}, parts[0]) ||
		parts[n] != "actions" || parts[n+1] != "runners" || len(parts) > n+3 {
		return "", false
	}
	if len(parts) == n+3 {
		return parts[n+2], true
	}
	return "", true
}

func restPath(parts []string) bool {
	_, ok := restScope(parts)
	return ok
}

// restAuthLocked accepts the PAT or an unexpired installation token.
func (f *Fake) restAuthLocked(r *http.Request) bool {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	exp, ok := f.tokens[tok]
	return tok == f.PAT && f.PAT != "" || ok && time.Now().Before(exp) && strings.HasPrefix(tok, "ghs_")
}

// restRunners serves the REST list (paged as GitHub pages: per_page up
// to 100, default 30, a Link header to the next page) and removal (422
// while the runner runs a job, 404 when unknown). The fake has one scope:
// every runner is listed, with its scale set's labels.
func (f *Fake) restRunners(w http.ResponseWriter, r *http.Request, rest string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := OpRESTListRunners
	if rest != "" {
		op = OpRESTRemoveRunner
	}
	if st := f.fault(op); st != 0 {
		injected(w, st)
		return
	}
	if !f.restAuthLocked(r) {
		writeJSON(w, 401, map[string]string{"message": "Bad credentials"})
		return
	}
	switch {
	case rest == "" && r.Method == "GET":
		f.restList(w, r)
	case rest != "" && r.Method == "DELETE":
		f.restRemove(w, rest)
	default:
		writeJSON(w, 404, map[string]string{"message": "Not Found"})
	}
}

func (f *Fake) restList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 30
	}
	per = min(per, 100)
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 1)
	ids := make([]int, 0, len(f.runners))
	for id := range f.runners {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	list := []map[string]any{}
	for _, id := range ids[min((page-1)*per, len(ids)):min(page*per, len(ids))] {
		list = append(list, f.restRunnerJSON(f.runners[id]))
	}
	if page*per < len(ids) {
		u := *r.URL
		q.Set("page", strconv.Itoa(page+1))
		q.Set("per_page", strconv.Itoa(per))
		u.RawQuery = q.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<%s%s>; rel="next"`, f.URL, u.RequestURI()))
	}
	writeJSON(w, 200, map[string]any{"total_count": len(ids), "runners": list})
}

func (f *Fake) restRunnerJSON(rn *Runner) map[string]any {
	status := "offline"
	if rn.Online {
		status = "online"
	}
	labels := []map[string]any{}
	group := 1
	if s := f.sets[rn.ScaleSetID]; s != nil {
		group = s.RunnerGroupID
		for i, l := range s.Labels {
			labels = append(labels, map[string]any{"id": i + 1, "name": l, "type": "read-only"})
		}
	}
	return map[string]any{"id": rn.ID, "name": rn.Name, "os": "Linux", "status": status, "busy": rn.Job != 0,
		"ephemeral": true, "runner_group_id": group, "labels": labels}
}

func (f *Fake) restRemove(w http.ResponseWriter, rest string) {
	id, err := strconv.Atoi(rest)
	rn := f.runners[id]
	switch {
	case err != nil || rn == nil:
		writeJSON(w, 404, map[string]string{"message": "Not Found"})
	case rn.Job != 0:
		writeJSON(w, 422, map[string]string{"message": fmt.Sprintf(`Bad request - Runner "%s" is still running a job"`, rn.Name)})
	default:
		delete(f.runners, id)
		f.notify()
		w.WriteHeader(204)
	}
}
