package scalesettest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"time"
)

// servicePrefix is where the fake's Actions service lives (GitHub's is a
// tenant URL on pipelines.actions.githubusercontent.com).
const servicePrefix = "/pipelines/fake-tenant/"

const (
	scaleSetsPath = "_apis/runtime/runnerscalesets"
	agentsPath    = "_apis/distributedtask/pools/0/agents"
	groupsPath    = "_apis/runtime/runnergroups"
)

// service serves the Actions service API under servicePrefix.
func (f *Fake) service(w http.ResponseWriter, r *http.Request, path string, body []byte) {
	switch {
	case path == groupsPath:
		f.withAdmin(w, r, OpRunnerGroups, func(w http.ResponseWriter) { f.runnerGroups(w, r) })
	case path == scaleSetsPath || strings.HasPrefix(path, scaleSetsPath+"/"):
		f.scaleSetCall(w, r, strings.Split(strings.Trim(strings.TrimPrefix(path, scaleSetsPath), "/"), "/"), body)
	case path == agentsPath || strings.HasPrefix(path, agentsPath+"/"):
		f.agentCall(w, r, strings.Trim(strings.TrimPrefix(path, agentsPath), "/"))
	default:
		exception(w, 404, "NotFoundException", "no such API: "+path)
	}
}

// withAdmin runs fn for a request that needs the admin token, after the
// fault injection of op, with f.mu held.
func (f *Fake) withAdmin(w http.ResponseWriter, r *http.Request, op Op, fn func(http.ResponseWriter)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.fault(op)
	if st > 0 {
		injected(w, st)
		return
	}
	if !adminOK(r) {
		exception(w, 401, "UnauthorizedException", "the admin token is missing, invalid or expired")
		return
	}
	if st < 0 { // done, but the answer is lost
		fn(httptest.NewRecorder())
		injected(w, -st)
		return
	}
	fn(w)
}

func (f *Fake) runnerGroups(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("groupName")
	var list []map[string]any
	for n, id := range f.groups {
		if name == "" || n == name {
			list = append(list, map[string]any{"id": id, "name": n, "isDefaultGroup": id == 1})
		}
	}
	writeJSON(w, 200, map[string]any{"count": len(list), "value": list})
}

func (f *Fake) scaleSetCall(w http.ResponseWriter, r *http.Request, parts []string, body []byte) {
	if parts[0] == "" {
		parts = nil
	}
	var id int
	if len(parts) > 0 {
		var err error
		if id, err = strconv.Atoi(parts[0]); err != nil {
			exception(w, 404, "NotFoundException", "bad scale set id")
			return
		}
	}
	switch {
	case len(parts) == 0 && r.Method == "GET":
		f.withAdmin(w, r, OpScaleSetGet, func(w http.ResponseWriter) { f.findScaleSet(w, r) })
	case len(parts) == 0 && r.Method == "POST":
		f.withAdmin(w, r, OpScaleSetCreate, func(w http.ResponseWriter) { f.createScaleSet(w, body) })
	case len(parts) == 1 && r.Method == "GET":
		f.withAdmin(w, r, OpScaleSetGet, func(w http.ResponseWriter) { f.withSet(w, id, func(s *ScaleSet) { writeJSON(w, 200, f.setJSON(s)) }) })
	case len(parts) == 1 && r.Method == "PATCH":
		f.withAdmin(w, r, OpScaleSetUpdate, func(w http.ResponseWriter) { f.withSet(w, id, func(s *ScaleSet) { f.updateScaleSet(w, s, body) }) })
	case len(parts) == 1 && r.Method == "DELETE":
		f.withAdmin(w, r, OpScaleSetDelete, func(w http.ResponseWriter) { f.withSet(w, id, func(s *ScaleSet) { f.deleteScaleSet(w, s) }) })
	case len(parts) == 2 && parts[1] == "sessions" && r.Method == "POST":
		f.withAdmin(w, r, OpSessionCreate, func(w http.ResponseWriter) { f.withSet(w, id, func(s *ScaleSet) { f.createSession(w, s, body) }) })
	case len(parts) == 3 && parts[1] == "sessions" && r.Method == "DELETE":
		f.withAdmin(w, r, OpSessionDelete, func(w http.ResponseWriter) { f.deleteSession(w, id, parts[2]) })
	case len(parts) == 3 && parts[1] == "sessions" && r.Method == "PATCH":
		f.withAdmin(w, r, OpSessionRefresh, func(w http.ResponseWriter) { f.refreshSession(w, id, parts[2]) })
	case len(parts) == 2 && parts[1] == "messages" && r.Method == "GET":
		f.getMessage(w, r, id)
	case len(parts) == 3 && parts[1] == "messages" && r.Method == "DELETE":
		f.deleteMessage(w, r, id, parts[2])
	case len(parts) == 2 && parts[1] == "acquirejobs" && r.Method == "POST":
		f.acquireJobs(w, r, id, body)
	case len(parts) == 2 && parts[1] == "generatejitconfig" && r.Method == "POST":
		f.withAdmin(w, r, OpGenerateJIT, func(w http.ResponseWriter) { f.withSet(w, id, func(s *ScaleSet) { f.generateJIT(w, s, body) }) })
	default:
		exception(w, 404, "NotFoundException", "no such API")
	}
}

func (f *Fake) withSet(w http.ResponseWriter, id int, fn func(*ScaleSet)) {
	s := f.sets[id]
	if s == nil {
		exception(w, 404, "RunnerScaleSetNotFoundException", fmt.Sprintf("runner scale set %d not found", id))
		return
	}
	fn(s)
}

func (f *Fake) setJSON(s *ScaleSet) map[string]any {
	var labels []map[string]string
	for _, l := range s.Labels {
		labels = append(labels, map[string]string{"type": "System", "name": l})
	}
	group := ""
	for n, id := range f.groups {
		if id == s.RunnerGroupID {
			group = n
		}
	}
	return map[string]any{
		"id": s.ID, "name": s.Name, "runnerGroupId": s.RunnerGroupID, "runnerGroupName": group, "labels": labels,
		"RunnerSetting":      map[string]any{"disableUpdate": true},
		"runnerJitConfigUrl": fmt.Sprintf("%s%s%s/%d/generatejitconfig", f.URL, servicePrefix, scaleSetsPath, s.ID),
		"statistics":         f.stats(s.ID),
	}
}

func (f *Fake) findScaleSet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var list []map[string]any
	for _, s := range f.sets {
		if (q.Get("name") == "" || s.Name == q.Get("name")) && (q.Get("runnerGroupId") == "" || strconv.Itoa(s.RunnerGroupID) == q.Get("runnerGroupId")) {
			list = append(list, f.setJSON(s))
		}
	}
	writeJSON(w, 200, map[string]any{"count": len(list), "value": list})
}

type setBody struct {
	Name          string `json:"name"`
	RunnerGroupID int    `json:"runnerGroupId"`
	Labels        []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"labels"`
}

func (b setBody) labels() []string {
	var out []string
	for _, l := range b.Labels {
		out = append(out, l.Name)
	}
	return out
}

func (f *Fake) createScaleSet(w http.ResponseWriter, body []byte) {
	var b setBody
	if err := json.Unmarshal(body, &b); err != nil || b.Name == "" || len(b.Labels) == 0 {
		exception(w, 400, "ArgumentException", "a scale set needs a name and labels")
		return
	}
	if !slices.Contains(f.groupIDs(), b.RunnerGroupID) {
		exception(w, 404, "RunnerGroupNotFoundException", fmt.Sprintf("runner group %d not found", b.RunnerGroupID))
		return
	}
	for _, s := range f.sets {
		if s.Name == b.Name && s.RunnerGroupID == b.RunnerGroupID {
			exception(w, 409, "RunnerScaleSetExistsException", fmt.Sprintf("runner scale set %q already exists", b.Name))
			return
		}
	}
	f.nextID++
	s := &ScaleSet{ID: f.nextID, Name: b.Name, RunnerGroupID: b.RunnerGroupID, Labels: b.labels()}
	f.sets[s.ID] = s
	f.queues[s.ID] = &queue{}
	f.offerQueued()
	f.notify()
	writeJSON(w, 200, f.setJSON(s))
}

func (f *Fake) groupIDs() []int {
	var ids []int
	for _, id := range f.groups {
		ids = append(ids, id)
	}
	return ids
}

func (f *Fake) updateScaleSet(w http.ResponseWriter, s *ScaleSet, body []byte) {
	var b setBody
	if err := json.Unmarshal(body, &b); err != nil {
		exception(w, 400, "ArgumentException", "bad body")
		return
	}
	if b.Name != "" {
		s.Name = b.Name
	}
	if b.RunnerGroupID != 0 {
		s.RunnerGroupID = b.RunnerGroupID
	}
	if len(b.Labels) > 0 {
		s.Labels = b.labels()
	}
	f.offerQueued()
	f.notify()
	writeJSON(w, 200, f.setJSON(s))
}

func (f *Fake) deleteScaleSet(w http.ResponseWriter, s *ScaleSet) {
	delete(f.sets, s.ID)
	delete(f.sessions, s.ID)
	delete(f.queues, s.ID)
	for _, j := range f.jobs {
		if j.ScaleSetID == s.ID && j.State != JobDone {
			j.State, j.ScaleSetID = JobQueued, 0
		}
	}
	f.offerQueued()
	f.notify()
	w.WriteHeader(204)
}

// stats are a scale set's statistics as the service reports them.
func (f *Fake) stats(setID int) map[string]int {
	st := map[string]int{"totalAvailableJobs": 0, "totalAcquiredJobs": 0, "totalAssignedJobs": 0, "totalRunningJobs": 0,
		"totalRegisteredRunners": 0, "totalBusyRunners": 0, "totalIdleRunners": 0}
	for _, j := range f.jobs {
		if j.ScaleSetID != setID {
			continue
		}
		switch j.State {
		case JobAvailable:
			st["totalAvailableJobs"]++
		case JobAssigned:
			st["totalAcquiredJobs"]++
			st["totalAssignedJobs"]++
		case JobRunning:
			st["totalAcquiredJobs"]++
			st["totalAssignedJobs"]++
			st["totalRunningJobs"]++
		}
	}
	for _, r := range f.runners {
		if r.ScaleSetID != setID {
			continue
		}
		st["totalRegisteredRunners"]++
		switch {
		case r.Job != 0:
			st["totalBusyRunners"]++
		case r.Online:
			st["totalIdleRunners"]++
		}
	}
	return st
}

// offerQueued offers each queued job to the first scale set whose labels
// match. Call with f.mu held.
func (f *Fake) offerQueued() {
	var ids []int
	for id := range f.sets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, j := range f.sortedJobs() {
		if j.State != JobQueued {
			continue
		}
		for _, id := range ids {
			if labelsMatch(f.sets[id].Labels, j.Labels) {
				j.State, j.ScaleSetID = JobAvailable, id
				j.Offers++
				f.event(id, f.jobMessage("JobAvailable", j, map[string]any{
					"acquireJobUrl": fmt.Sprintf("%s%s%s/%d/acquirejobs", f.URL, servicePrefix, scaleSetsPath, id)}))
				break
			}
		}
	}
}

func (f *Fake) sortedJobs() []*Job {
	var out []*Job
	for _, j := range f.jobs {
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b *Job) int { return int(a.RequestID - b.RequestID) })
	return out
}

// jobMessage is a job message as the service batches them.
func (f *Fake) jobMessage(kind string, j *Job, extra map[string]any) json.RawMessage {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	m := map[string]any{
		"messageType": kind, "runnerRequestId": j.RequestID, "repositoryName": "hello-world", "ownerName": "octo",
		"jobId": j.JobID, "jobWorkflowRef": "octo/hello-world/.github/workflows/ci.yml@refs/heads/main",
		"jobDisplayName": "build", "workflowRunId": 4000 + j.RequestID, "eventName": "push", "requestLabels": j.Labels,
		"queueTime": now, "scaleSetAssignTime": now, "runnerAssignTime": now, "finishTime": now,
	}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func (f *Fake) acquireJobs(w http.ResponseWriter, r *http.Request, setID int, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.fault(OpAcquireJobs); st != 0 {
		injected(w, st)
		return
	}
	if _, ok := f.sessionByToken(r, setID); !ok {
		noSession(w)
		return
	}
	var ids []int64
	if err := json.Unmarshal(body, &ids); err != nil {
		exception(w, 400, "ArgumentException", "the body is a list of request ids")
		return
	}
	acquired := []int64{}
	for _, id := range ids {
		j := f.jobs[id]
		if j == nil || j.ScaleSetID != setID || j.State != JobAvailable {
			continue
		}
		j.State = JobAssigned
		acquired = append(acquired, id)
		f.event(setID, f.jobMessage("JobAssigned", j, nil))
	}
	f.notify()
	writeJSON(w, 200, map[string]any{"count": len(acquired), "value": acquired})
}

func (f *Fake) generateJIT(w http.ResponseWriter, s *ScaleSet, body []byte) {
	var b struct {
		Name       string `json:"name"`
		WorkFolder string `json:"workFolder"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Name == "" {
		exception(w, 400, "ArgumentException", "a runner name is required")
		return
	}
	for _, r := range f.runners {
		if r.Name == b.Name {
			exception(w, 409, "AgentExistsException", fmt.Sprintf("Agent exists with the name %s", b.Name))
			return
		}
	}
	f.nextID++
	rn := &Runner{ID: f.nextID, Name: b.Name, ScaleSetID: s.ID}
	f.runners[rn.ID] = rn
	jit := f.encodeJIT(rn, b.WorkFolder)
	f.issued = append(f.issued, jit)
	f.notify()
	writeJSON(w, 200, map[string]any{"runner": f.runnerJSON(rn), "encodedJITConfig": jit})
}

func (f *Fake) runnerJSON(r *Runner) map[string]any {
	status := "offline"
	if r.Online {
		status = "online"
	}
	return map[string]any{"id": r.ID, "name": r.Name, "runnerScaleSetId": r.ScaleSetID, "status": status, "busy": r.Job != 0}
}

func (f *Fake) agentCall(w http.ResponseWriter, r *http.Request, rest string) {
	if rest == "" && r.Method == "GET" {
		f.withAdmin(w, r, OpRunnerGet, func(w http.ResponseWriter) {
			name := r.URL.Query().Get("agentName")
			list := []map[string]any{}
			for _, rn := range f.runners {
				if rn.Name == name {
					list = append(list, f.runnerJSON(rn))
				}
			}
			writeJSON(w, 200, map[string]any{"count": len(list), "value": list})
		})
		return
	}
	id, err := strconv.Atoi(rest)
	op := OpRunnerGet
	if r.Method == "DELETE" {
		op = OpRunnerRemove
	}
	f.withAdmin(w, r, op, func(w http.ResponseWriter) {
		rn := f.runners[id]
		if err != nil || rn == nil {
			exception(w, 404, "AgentNotFoundException", fmt.Sprintf("No agent found with identifier %s", rest))
			return
		}
		switch r.Method {
		case "GET":
			writeJSON(w, 200, f.runnerJSON(rn))
		case "DELETE":
			if rn.Job != 0 {
				exception(w, 400, "JobStillRunningException", fmt.Sprintf("Agent %d is running a job", id))
				return
			}
			delete(f.runners, id)
			f.notify()
			w.WriteHeader(204)
		default:
			exception(w, 405, "MethodNotAllowed", r.Method)
		}
	})
}
