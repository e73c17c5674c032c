package scalesettest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// encodeJIT builds a config shaped like GitHub's: base64 of a JSON map from
// file name (.runner, .credentials, .credentials_rsaparams) to the base64
// of that file; .runner carries fakeApi, this fake's URL, for the fake
// runner.
func (f *Fake) encodeJIT(rn *Runner, workFolder string) string {
	if workFolder == "" {
		workFolder = "_work"
	}
	runner, _ := json.Marshal(map[string]any{
		"agentId": rn.ID, "agentName": rn.Name, "poolId": 1, "poolName": "Default",
		"serverUrl": f.URL + "/_services/pipelines", "serverUrlV2": f.URL + servicePrefix, "useV2Flow": true,
		"gitHubUrl": f.URL + "/octo", "workFolder": workFolder, "ephemeral": true, "disableUpdate": true,
		"fakeApi": f.URL,
	})
	creds, _ := json.Marshal(map[string]any{"scheme": "OAuth", "data": map[string]string{
		"clientId": fmt.Sprint(rn.ID), "authorizationUrl": f.URL + "/_apis/oauth2/token", "requireFipsCryptography": "False"}})
	files := map[string]string{
		".runner":                base64.StdEncoding.EncodeToString(runner),
		".credentials":           base64.StdEncoding.EncodeToString(creds),
		".credentials_rsaparams": base64.StdEncoding.EncodeToString([]byte(`{"d":"fake","modulus":"fake"}`)),
	}
	b, _ := json.Marshal(files)
	return base64.StdEncoding.EncodeToString(b)
}

// runnerCall serves the fake runner: /_fake/runners/{id}/online, /job
// (204: a job of its scale set is now its own, JobStarted; 202: none is
// assigned yet) and /done (JobCompleted with the posted result).
func (f *Fake) runnerCall(w http.ResponseWriter, r *http.Request, parts []string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(parts) != 2 || r.Method != "POST" {
		http.Error(w, "not found", 404)
		return
	}
	id, _ := strconv.Atoi(parts[0])
	rn := f.runners[id]
	if rn == nil {
		http.Error(w, "no such runner (removed?)", 404)
		return
	}
	switch parts[1] {
	case "online":
		rn.Online = true
		f.notify()
		w.WriteHeader(204)
	case "job":
		if rn.Job == 0 && !f.takeJob(rn) {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.WriteHeader(204)
	case "done":
		var b struct {
			Result string `json:"result"`
		}
		json.Unmarshal(body, &b)
		if b.Result == "" {
			b.Result = "Succeeded"
		}
		if rn.Job == 0 {
			// An ephemeral runner that ends without a job stays
			// registered, offline, as GitHub keeps it.
			rn.Online = false
		} else {
			f.finish(rn, strings.ToLower(b.Result))
		}
		f.notify()
		w.WriteHeader(204)
	default:
		http.Error(w, "not found", 404)
	}
}

// takeJob gives the runner the oldest job assigned to its scale set.
// Call with f.mu held.
func (f *Fake) takeJob(rn *Runner) bool {
	for _, j := range f.sortedJobs() {
		if j.ScaleSetID == rn.ScaleSetID && j.State == JobAssigned {
			j.State, j.RunnerID, j.RunnerName = JobRunning, rn.ID, rn.Name
			j.Runs++
			rn.Job, rn.Online = j.RequestID, true
			f.event(rn.ScaleSetID, f.jobMessage("JobStarted", j, map[string]any{"runnerId": rn.ID, "runnerName": rn.Name}))
			f.notify()
			return true
		}
	}
	return false
}

// finish ends the runner's job with result and removes the runner (it is
// ephemeral). Call with f.mu held.
func (f *Fake) finish(rn *Runner, result string) {
	if j := f.jobs[rn.Job]; j != nil {
		j.State, j.Result = JobDone, result
		f.event(rn.ScaleSetID, f.jobMessage("JobCompleted", j, map[string]any{
			"result": result, "runnerId": rn.ID, "runnerName": rn.Name}))
	}
	delete(f.runners, rn.ID)
	f.notify()
}
