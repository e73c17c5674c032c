package github

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v66/github"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// App identifies a GitHub App installation: the better credential for
// organisations (short-lived tokens, not tied to a person).
type App struct {
	ID             int64
	InstallationID int64
	PrivateKey     secret.Value // PEM, PKCS#1 or PKCS#8
}

// InstallationToken mints an installation access token (valid one hour)
// with a JWT signed by the app's private key (RS256), as GitHub documents,
// through a client of the API like any other call (GitHub's retry policy,
// errors as *APIError). The JWT is a credential: the API URL is checked
// (https only) before any request is made. o.Token is not used.
func InstallationToken(ctx context.Context, o Options, app App) (secret.Value, error) {
	c, err := app.client(o)
	if err != nil {
		return secret.Value{}, err
	}
	tok, _, err := app.mint(ctx, c)
	return tok, err
}

// mint mints a token through c, an app client, and returns when it
// expires (GitHub's expires_at; one hour from now if GitHub omits it).
func (a App) mint(ctx context.Context, c *Client) (secret.Value, time.Time, error) {
	const op = "GitHub App token"
	tok, resp, err := callFor(ctx, c, op, func() (*gh.InstallationToken, *gh.Response, error) {
		return c.gh.Apps.CreateInstallationToken(ctx, a.InstallationID, &gh.InstallationTokenOptions{})
	})
	if err != nil {
		return secret.Value{}, time.Time{}, err
	}
	if tok.GetToken() == "" {
		return secret.Value{}, time.Time{}, a.refusal(op, resp.StatusCode, nil)
	}
	expires := tok.GetExpiresAt().Time
	if expires.IsZero() {
		expires = time.Now().Add(time.Hour)
	}
	return secret.New(tok.GetToken()), expires, nil
}

// TokenRefreshMargin: an installation token with less than this left
// is replaced by a new one before a request (GitHub's tokens live an
// hour; a job may run for many).
const TokenRefreshMargin = 5 * time.Minute

// NewAppClient makes a client for scope that authenticates as the app's
// installation: it mints a token now (its errors are returned here), and
// mints anew before any request once the token has less than
// TokenRefreshMargin left. minted, if not nil, receives each token (to
// redact it). o.Token is not used.
func NewAppClient(ctx context.Context, scope Scope, o Options, app App, minted func(secret.Value)) (*Client, error) {
	mc, err := app.client(o)
	if err != nil {
		return nil, err
	}
	src := &appTokens{mint: func(ctx context.Context) (secret.Value, time.Time, error) { return app.mint(ctx, mc) }, minted: minted}
	if _, err := src.get(ctx); err != nil {
		return nil, errors.Unwrap(err)
	}
	return newScopeClient(scope, o, src.get)
}

// appTokens is an installation token, minted anew when it runs out.
type appTokens struct {
	mint   func(context.Context) (secret.Value, time.Time, error)
	minted func(secret.Value)

	mu      sync.Mutex
	tok     secret.Value
	expires time.Time
}

// get returns a token with more than TokenRefreshMargin left, minting one
// if need be; if minting fails, the old token while it is still valid.
func (t *appTokens) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.tok.Empty() && time.Until(t.expires) > TokenRefreshMargin {
		return t.tok.Reveal(), nil
	}
	tok, expires, err := t.mint(ctx)
	switch {
	case err != nil && !t.tok.Empty() && time.Now().Before(t.expires):
		return t.tok.Reveal(), nil
	case err != nil:
		return "", &tokenError{err: err}
	}
	t.tok, t.expires = tok, expires
	if t.minted != nil {
		t.minted(tok)
	}
	return tok.Reveal(), nil
}

// tokenError is a request not sent: no installation token could be
// minted (minting had its own retries).
type tokenError struct{ err error }

func (e *tokenError) Error() string { return e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// client is a client of o.APIURL that authenticates as the app: a JWT is
// signed per request (rate-limit waits can outlast one). A bad URL or a
// key that cannot sign fails here, before any request.
func (a App) client(o Options) (*Client, error) {
	if _, err := CanonicalAPIURL(o.APIURL, o.TestOnlyAllowLoopbackHTTP); err != nil {
		return nil, err
	}
	key, err := parseKey(a.PrivateKey)
	if err != nil {
		return nil, err
	}
	sign := func(context.Context) (string, error) { return appJWT(a.ID, key, time.Now()) }
	if _, err := sign(context.Background()); err != nil {
		return nil, err
	}
	hc := o.httpClient()
	if o.HTTP == nil {
		hc.Timeout = 30 * time.Second
	}
	hc.Transport = bearer{base: hc.Transport, token: sign}
	c, err := newClient(o, hc)
	if err != nil {
		return nil, err
	}
	c.refuse = a.refusal
	return c, nil
}

// refusal is the error for an answer the policy does not retry.
func (a App) refusal(op string, status int, err error) error {
	switch {
	case status == 401:
		err = errors.New("the app id or private key was rejected")
	case status == 404:
		err = fmt.Errorf("installation %d not found for app %d", a.InstallationID, a.ID)
	case status == 200 || status == 201:
		err = errors.New("no token in GitHub's answer")
	}
	return &APIError{Op: op, Status: status, Err: err}
}

func parseKey(pemKey secret.Value) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(strings.TrimSpace(strings.ReplaceAll(pemKey.Reveal(), `\n`, "\n"))))
	if block == nil {
		return nil, errors.New("github_app_private_key is not a PEM private key")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("github_app_private_key is not an RSA private key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("github_app_private_key is not an RSA private key")
	}
	return rk, nil
}

// appJWT is the app's JSON Web Token: issued a minute in the past (clock
// drift), valid nine minutes (GitHub allows ten).
func appJWT(appID int64, key *rsa.PrivateKey, now time.Time) (string, error) {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix(), "iss": strconv.FormatInt(appID, 10)})
	signing := header + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + enc.EncodeToString(sig), nil
}
