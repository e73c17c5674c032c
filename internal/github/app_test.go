package github

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/runpod-workers/worker-github_runner/internal/github/githubtest"
	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// The JWT is checked with golang-jwt, an implementation independent of
// the worker's, as GitHub would check it: RS256 with the app's key, the
// app id as issuer, issued in the past, at most ten minutes of life.
func TestAppJWT(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := appJWT(123, key, now)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(at time.Time, pub *rsa.PublicKey) (*jwt.Token, *jwt.RegisteredClaims, error) {
		var c jwt.RegisteredClaims
		p, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return pub, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return at }),
			jwt.WithIssuedAt(), jwt.WithExpirationRequired(), jwt.WithIssuer("123"))
		return p, &c, err
	}
	p, c, err := parse(now, &key.PublicKey)
	if err != nil {
		t.Fatalf("golang-jwt rejects the JWT: %v", err)
	}
	if p.Header["typ"] != "JWT" {
		t.Errorf("header %v", p.Header)
	}
	if life := c.ExpiresAt.Sub(c.IssuedAt.Time); life > 10*time.Minute || c.IssuedAt.After(now) {
		t.Errorf("issued %v, expires %v: GitHub wants iat in the past and at most ten minutes of life", c.IssuedAt, c.ExpiresAt)
	}
	if _, _, err := parse(now.Add(20*time.Minute), &key.PublicKey); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("20 minutes later: %v, want expired", err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, _, err := parse(now, &other.PublicKey); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Errorf("another key: %v, want a bad signature", err)
	}
}

func TestParseKey(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	pkcs8 := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	// Environment variables often carry the key with literal \n.
	escaped := strings.ReplaceAll(pkcs1, "\n", `\n`)
	for name, k := range map[string]string{"pkcs1": pkcs1, "pkcs8": pkcs8, "escaped newlines": escaped} {
		if got, err := parseKey(secret.New(k)); err != nil || got.N.Cmp(key.N) != 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := parseKey(secret.New("not a key")); err == nil || strings.Contains(err.Error(), "not a key") {
		t.Errorf("bad key: %v (the error must not echo the key)", err)
	}
}

// testApp is app 4242's installation 77, with a key the fake GitHub g
// checks its JWTs with.
func testApp(g *githubtest.GitHub) App {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	g.AppKey, g.AppID = &key.PublicKey, "4242"
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	return App{ID: 4242, InstallationID: 77, PrivateKey: secret.New(pemKey)}
}
