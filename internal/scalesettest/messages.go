package scalesettest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxBatch is how many job messages one message carries at most.
const maxBatch = 50

// queue is a scale set's message queue: job messages not yet batched,
// and batched messages not yet acknowledged (deleted).
type queue struct {
	pending []json.RawMessage
	msgs    []message
}

type message struct {
	id   int
	body []json.RawMessage
}

type session struct {
	id, owner, token string
	lastSeen         time.Time
	polling          int
}

// event queues a job message for a scale set. Call with f.mu held.
func (f *Fake) event(setID int, m json.RawMessage) {
	if q := f.queues[setID]; q != nil {
		q.pending = append(q.pending, m)
	}
}

// expireSessions drops sessions that stopped polling. Call with f.mu held.
func (f *Fake) expireSessions() {
	for id, s := range f.sessions {
		if s.polling == 0 && time.Since(s.lastSeen) > f.SessionTimeout {
			delete(f.sessions, id)
		}
	}
}

func (f *Fake) sessionJSON(s *ScaleSet, ss *session) map[string]any {
	return map[string]any{
		"sessionId": ss.id, "ownerName": ss.owner, "runnerScaleSet": f.setJSON(s),
		"messageQueueUrl":         fmt.Sprintf("%s%s%s/%d/messages?sessionId=%s", f.URL, servicePrefix, scaleSetsPath, s.ID, ss.id),
		"messageQueueAccessToken": ss.token, "statistics": f.stats(s.ID),
	}
}

func (f *Fake) createSession(w http.ResponseWriter, s *ScaleSet, body []byte) {
	var b struct {
		OwnerName string `json:"ownerName"`
	}
	json.Unmarshal(body, &b)
	f.expireSessions()
	if old := f.sessions[s.ID]; old != nil {
		exception(w, 409, "TaskAgentSessionConflictException",
			fmt.Sprintf("The message session for runner scale set %d already exists (owner %s).", s.ID, old.owner))
		return
	}
	ss := &session{id: uuidish(), owner: b.OwnerName, token: "MQT" + randomHex(16), lastSeen: time.Now()}
	f.sessions[s.ID] = ss
	f.issued = append(f.issued, ss.token)
	writeJSON(w, 200, f.sessionJSON(s, ss))
}

func uuidish() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
}

func (f *Fake) deleteSession(w http.ResponseWriter, setID int, id string) {
	if ss := f.sessions[setID]; ss == nil || ss.id != id {
		exception(w, 404, "TaskAgentSessionExpiredException", "no such session")
		return
	}
	delete(f.sessions, setID)
	w.WriteHeader(204)
}

func (f *Fake) refreshSession(w http.ResponseWriter, setID int, id string) {
	ss := f.sessions[setID]
	if ss == nil || ss.id != id {
		exception(w, 404, "TaskAgentSessionExpiredException", "no such session")
		return
	}
	ss.token, ss.lastSeen = "MQT"+randomHex(16), time.Now()
	f.issued = append(f.issued, ss.token)
	writeJSON(w, 200, f.sessionJSON(f.sets[setID], ss))
}

// ExpireSessionTokens makes every session's message-queue token invalid
// (401), as GitHub's expire; the client refreshes its session.
func (f *Fake) ExpireSessionTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ss := range f.sessions {
		ss.token = "MQT" + randomHex(16)
	}
}

// sessionByToken finds the session of setID whose token the request
// carries. Call with f.mu held.
func (f *Fake) sessionByToken(r *http.Request, setID int) (*session, bool) {
	ss := f.sessions[setID]
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ss == nil || tok != ss.token {
		return nil, false
	}
	return ss, true
}

// noSession is the service's answer to a message-queue request without a
// valid session token.
func noSession(w http.ResponseWriter) {
	exception(w, 401, "UnauthorizedException", "the session token is missing, invalid or expired")
}

// getMessage is the long poll: the first unacknowledged message after
// lastMessageId, else a new batch of pending job messages, else, after
// LongPoll, 202.
func (f *Fake) getMessage(w http.ResponseWriter, r *http.Request, setID int) {
	f.mu.Lock()
	if st := f.fault(OpGetMessage); st != 0 {
		f.mu.Unlock()
		injected(w, st)
		return
	}
	ss, ok := f.sessionByToken(r, setID)
	if !ok || r.URL.Query().Get("sessionId") != ss.id {
		f.mu.Unlock()
		noSession(w)
		return
	}
	capacity, err := strconv.Atoi(r.Header.Get("X-ScaleSetMaxCapacity"))
	if err != nil || capacity < 0 {
		f.mu.Unlock()
		exception(w, 400, "ArgumentException", "X-ScaleSetMaxCapacity must be a number of runners")
		return
	}
	f.capacities[setID] = append(f.capacities[setID], capacity)
	last, _ := strconv.Atoi(r.URL.Query().Get("lastMessageId"))
	ss.polling++
	ss.lastSeen = time.Now()
	defer func() {
		ss.polling--
		ss.lastSeen = time.Now()
		f.mu.Unlock()
	}()
	timer := time.NewTimer(f.LongPoll)
	defer timer.Stop()
	for {
		if f.sessions[setID] != ss {
			exception(w, 404, "TaskAgentSessionExpiredException", "the session was deleted")
			return
		}
		if m, ok := f.nextMessage(setID, last); ok {
			body, _ := json.Marshal(m.body)
			writeJSON(w, 200, map[string]any{"messageId": m.id, "messageType": "RunnerScaleSetJobMessages",
				"body": string(body), "statistics": f.stats(setID)})
			return
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
			f.mu.Lock()
		case <-timer.C:
			f.mu.Lock()
			w.WriteHeader(http.StatusAccepted)
			return
		case <-r.Context().Done():
			f.mu.Lock()
			return
		case <-f.closing:
			f.mu.Lock()
			w.WriteHeader(http.StatusAccepted)
			return
		}
	}
}

// nextMessage is the first unacknowledged message after last, batching
// pending job messages into a new one when there is none. Call with f.mu
// held.
func (f *Fake) nextMessage(setID, last int) (message, bool) {
	q := f.queues[setID]
	if q == nil {
		return message{}, false
	}
	for _, m := range q.msgs {
		if m.id > last {
			return m, true
		}
	}
	if len(q.pending) == 0 {
		return message{}, false
	}
	n := min(len(q.pending), maxBatch)
	f.nextID++
	m := message{id: f.nextID, body: slices.Clone(q.pending[:n])}
	q.pending = q.pending[n:]
	q.msgs = append(q.msgs, m)
	return m, true
}

func (f *Fake) deleteMessage(w http.ResponseWriter, r *http.Request, setID int, rawID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.fault(OpDeleteMessage); st != 0 {
		injected(w, st)
		return
	}
	if _, ok := f.sessionByToken(r, setID); !ok {
		noSession(w)
		return
	}
	id, _ := strconv.Atoi(rawID)
	q := f.queues[setID]
	if q == nil || !slices.ContainsFunc(q.msgs, func(m message) bool { return m.id == id }) {
		exception(w, 404, "MessageNotFoundException", fmt.Sprintf("message %s not found", rawID))
		return
	}
	q.msgs = slices.DeleteFunc(q.msgs, func(m message) bool { return m.id == id })
	w.WriteHeader(204)
}

// Unacknowledged counts a scale set's messages delivered or pending but
// not deleted.
func (f *Fake) Unacknowledged(setID int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if q := f.queues[setID]; q != nil {
		return len(q.msgs) + len(q.pending)
	}
	return 0
}
