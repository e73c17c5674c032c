package imagegen

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type fakeAsset struct {
	Name   string `json:"name"`
	Digest string `json:"digest,omitempty"`
}

// digestRelease serves v2.338.0 with these notes and assets.
func digestRelease(t *testing.T, body string, assets []fakeAsset) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"tag_name": "v2.338.0", "body": body, "assets": assets})
	}))
	t.Cleanup(s.Close)
	return s
}

func noteSum(arch, sum string) string {
	return "<!-- BEGIN SHA linux-" + arch + " -->" + sum + "<!-- END SHA linux-" + arch + " -->\n"
}

// The release API's asset digest is preferred, the notes are the
// fallback, and a disagreement is refused naming the asset.
func TestFetchReleaseDigests(t *testing.T) {
	a, b, c := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	x64 := "actions-runner-linux-x64-2.338.0.tar.gz"
	arm := "actions-runner-linux-arm64-2.338.0.tar.gz"
	for _, tc := range []struct {
		name    string
		body    string
		assets  []fakeAsset
		want    map[string]string
		wantErr string
	}{
		{name: "digests only", assets: []fakeAsset{{x64, "sha256:" + a}, {arm, "sha256:" + b}, {"actions-runner-osx-x64-2.338.0.tar.gz", "sha256:" + c}},
			want: map[string]string{"linux/amd64": a, "linux/arm64": b}},
		{name: "notes fill in what has no digest", body: noteSum("x64", a) + noteSum("arm64", b), assets: []fakeAsset{{Name: x64}, {arm, "sha256:" + b}},
			want: map[string]string{"linux/amd64": a, "linux/arm64": b}},
		{name: "agreeing", body: noteSum("x64", a), assets: []fakeAsset{{x64, "sha256:" + a}},
			want: map[string]string{"linux/amd64": a}},
		{name: "other digest algorithms are not sums", body: noteSum("x64", a), assets: []fakeAsset{{x64, "sha512:" + strings.Repeat("f", 128)}},
			want: map[string]string{"linux/amd64": a}},
		{name: "disagreeing", body: noteSum("x64", a) + noteSum("arm64", b), assets: []fakeAsset{{x64, "sha256:" + a}, {arm, "sha256:" + c}},
			wantErr: arm + ": the release API's digest sha256:" + c + " disagrees with the release notes' " + b},
		{name: "malformed digest", assets: []fakeAsset{{x64, "sha256:zz<script>"}},
			wantErr: x64 + ": malformed digest"},
		{name: "asset of another version", assets: []fakeAsset{{"actions-runner-linux-x64-2.337.0.tar.gz", "sha256:" + a}},
			want: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := digestRelease(t, tc.body, tc.assets)
			rel, err := FetchRelease(context.Background(), s.Client(), s.URL, "", "")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "<script>") {
					t.Errorf("error echoes the hostile digest: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rel.SHA256) != len(tc.want) {
				t.Fatalf("sums = %v, want %v", rel.SHA256, tc.want)
			}
			for k, v := range tc.want {
				if rel.SHA256[k] != v {
					t.Errorf("sums = %v, want %v", rel.SHA256, tc.want)
				}
			}
		})
	}
}
