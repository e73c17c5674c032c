package variants

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/mod/semver"

	"github.com/runpod-workers/worker-github_runner/internal/imageref"
	"github.com/runpod-workers/worker-github_runner/internal/platform"
)

var (
	variantNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	cudaRE        = regexp.MustCompile(`^[0-9]+\.[0-9]+(\.[0-9]+)?$`)
	runnerVerRE   = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	kanikoVerRE   = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)
	goVerRE       = regexp.MustCompile(`^1\.[0-9]+(\.[0-9]+)?$`)
	sha256RE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
	tagRE         = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	argNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// Debian package names (policy 5.6.7), optionally pinned: name=version.
	packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$`)
)

// Build arguments the template defines itself.
var reservedArgs = map[string]bool{
	"BUILD_TYPE": true, "CUDA_VERSION": true, "RUNNER_VERSION": true, "RUNNER_URL": true,
	"KANIKO_VERSION": true, "TARGETARCH": true, "TARGETOS": true, "TARGETPLATFORM": true,
	"TARGETVARIANT": true, "BUILDPLATFORM": true, "BUILDARCH": true, "BUILDOS": true,
}

// maxTemplateBytes bounds a variant's own Dockerfile template.
const maxTemplateBytes = 256 << 10

// The oldest runner GitHub lets register.
const minRunnerVersion = "2.329.0"

// at returns where a field was set, or nil when it came from --set.
func (v *Variant) at(field string) *hcl.Range {
	if _, ok := v.setBy[field]; ok {
		return nil
	}
	if r, ok := v.pos[field]; ok {
		return r.Ptr()
	}
	return nil
}

func (v *Variant) listAt(field string, i int) *hcl.Range {
	if _, ok := v.setBy[field]; ok {
		return nil
	}
	if rs := v.listPos[field]; i < len(rs) {
		return rs[i].Ptr()
	}
	return v.at(field)
}

func (v *Variant) mapAt(field, key string) *hcl.Range {
	if _, ok := v.setBy[field]; ok {
		return nil
	}
	if r, ok := v.mapPos[field][key]; ok {
		return r.Ptr()
	}
	return v.at(field)
}

func (v *Variant) errorf(field string, rng *hcl.Range, summary, format string, args ...any) *hcl.Diagnostic {
	detail := fmt.Sprintf("Variant %q: ", v.Name) + fmt.Sprintf(format, args...)
	if set, ok := v.setBy[field]; ok {
		detail += fmt.Sprintf(" (set by --set %s)", set)
	}
	if rng == nil && v.setBy[field] == "" {
		blk := v.namePos
		rng = &blk
	}
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng}
}

func validateVariant(v *Variant) hcl.Diagnostics {
	var diags hcl.Diagnostics
	add := func(d *hcl.Diagnostic) { diags = append(diags, d) }

	if !variantNameRE.MatchString(v.Name) {
		add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid variant name",
			Detail:   fmt.Sprintf("%q is not a valid variant name: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters.", v.Name),
			Subject:  v.namePos.Ptr(),
		})
	}
	switch v.Flavour {
	case FlavourGPU:
		if v.CUDA == "" {
			add(v.errorf("flavour", v.at("flavour"), "GPU variant without CUDA", "a gpu variant needs a CUDA version: set cuda = \"12.6.3\" (or use flavour = \"cpu\")."))
		}
	case FlavourCPU:
		if v.CUDA != "" {
			add(v.errorf("cuda", v.at("cuda"), "CUDA on a CPU variant", "cuda = %s is set but flavour is \"cpu\"; remove cuda or use flavour = \"gpu\".", short(v.CUDA)))
		}
	case FlavourScaler:
		diags = append(diags, validateScaler(v)...)
	default:
		add(v.errorf("flavour", v.at("flavour"), "Invalid flavour", "flavour must be \"gpu\", \"cpu\" or \"scaler\", not %s.", short(v.Flavour)))
	}
	if v.CUDA != "" && !cudaRE.MatchString(v.CUDA) {
		add(v.errorf("cuda", v.at("cuda"), "Malformed CUDA version", "%s is not a CUDA version like 12.6.3.", short(v.CUDA)))
	}
	if why := imageref.Check(v.Base, imageref.Image); why != "" {
		add(v.errorf("base", v.at("base"), "Invalid base image", "base %s is not a valid image reference: %s.", short(v.Base), why))
	}

	if len(v.Platforms) == 0 {
		add(v.errorf("platforms", v.at("platforms"), "No platforms", "platforms is empty; use [\"linux/amd64\"]."))
	}
	seenPlat := map[string]bool{}
	for i, p := range v.Platforms {
		switch {
		case !known(p):
			add(v.errorf("platforms", v.listAt("platforms", i), "Unsupported platform", "%s is not a platform the GitHub runner ships for; use one of %s.", short(p), strings.Join(platform.Names(), ", ")))
		case seenPlat[p]:
			add(v.errorf("platforms", v.listAt("platforms", i), "Duplicate platform", "%s is listed twice.", short(p)))
		case v.Runner.SHA256[p] == "" && !v.IsScaler():
			add(v.errorf("platforms", v.listAt("platforms", i), "Platform without runner checksum", "platform %s has no runner checksum: add \"%s\" = \"<sha256>\" to runner.sha256 (see the runner release notes), or drop the platform.", short(p), p))
		}
		seenPlat[p] = true
	}

	imageOK := imageref.Check(v.Image, imageref.Repository)
	if imageOK != "" {
		add(v.errorf("image", v.at("image"), "Invalid image repository", "image %s is not a repository name like registry.example.com/team/name: %s.", short(v.Image), imageOK))
	}
	if len(v.Tags) == 0 {
		add(v.errorf("tags", v.at("tags"), "No tags", "tags is empty: a variant needs at least one tag."))
	}
	for i, t := range v.Tags {
		if why := checkTag(t); why != "" {
			add(v.errorf("tags", v.listAt("tags", i), "Invalid tag", "%s is not a valid tag: %s.", short(t), why))
		} else if why := imageref.Check(v.ref(t), imageref.Tagged); why != "" && imageOK == "" {
			add(v.errorf("tags", v.listAt("tags", i), "Invalid tag", "%s is not a valid image reference: %s.", short(v.ref(t)), why))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(v.Labels)) {
		if k == "" || strings.ContainsAny(k, "\n\r\"=") || strings.ContainsAny(v.Labels[k], "\n\r") {
			add(v.errorf("labels", v.mapAt("labels", k), "Invalid label", "label %s=%s: keys must be non-empty without quotes, '=' or newlines, and values must be one line.", short(k), short(v.Labels[k])))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(v.Args)) {
		switch {
		case !argNameRE.MatchString(k):
			add(v.errorf("args", v.mapAt("args", k), "Invalid build argument", "%s is not a valid build argument name (letters, digits, underscores).", short(k)))
		case reservedArgs[k]:
			add(v.errorf("args", v.mapAt("args", k), "Reserved build argument", "%s is set by imagegen itself; set the matching field or variable instead.", short(k)))
		case strings.ContainsAny(v.Args[k], "\n\r"):
			add(v.errorf("args", v.mapAt("args", k), "Invalid build argument", "the value of %s must be one line.", short(k)))
		}
	}
	if v.Template != "" {
		if fi, err := os.Stat(v.Template); err != nil || !fi.Mode().IsRegular() || fi.Size() > maxTemplateBytes {
			add(v.errorf("template", v.at("template"), "Invalid template", "template %s must be a regular file of at most %d KiB, relative to the variants file.", short(v.Template), maxTemplateBytes>>10))
		}
	}
	for _, field := range []string{"runner_packages", "packages"} {
		list := v.RunnerPackages
		if field == "packages" {
			list = v.Packages
		}
		for i, p := range list {
			if !packageRE.MatchString(p) {
				add(v.errorf(field, v.listAt(field, i), "Invalid package name", "%s is not a Debian package name (lower-case letters, digits, '+', '-', '.', optionally =version).", short(p)))
			}
		}
	}
	return append(diags, validateBuildOptions(v)...)
}

// validateScaler checks that a scaler variant has none of a worker's
// parts: it is cmd/scaler on a distroless base.
func validateScaler(v *Variant) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, f := range []struct {
		field string
		set   bool
	}{
		{"cuda", v.CUDA != ""},
		{"runner_packages", len(v.RunnerPackages) > 0},
		{"packages", len(v.Packages) > 0},
		{"steps", len(v.Steps) > 0},
	} {
		if f.set {
			diags = append(diags, v.errorf(f.field, v.at(f.field), "Worker field on a scaler variant", "%s is set but flavour is \"scaler\": the scaler image has no runner, CUDA or packages; remove %s (or leave out inherits of a worker variant).", f.field, f.field))
		}
	}
	if v.BaseVariant != "" {
		diags = append(diags, v.errorf("base", v.at("base"), "Scaler built on a variant", "base = variant.%s: a scaler variant starts from an image (a distroless or scratch base), not from another variant.", short(v.BaseVariant)))
	}
	return diags
}

func (ev *evaluator) validateRunner() hcl.Diagnostics {
	var diags hcl.Diagnostics
	r, pos := ev.runner, ev.runPos
	if !runnerVerRE.MatchString(r.Version) {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Malformed runner version",
			Detail:   fmt.Sprintf("runner.version %s must look like 2.337.0.", short(r.Version)),
			Subject:  pos.version.Ptr(),
		})
	} else if versionLess(r.Version, minRunnerVersion) {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "Runner too old",
			Detail:   fmt.Sprintf("GitHub refuses to register runners older than %s; %s will never get a job.", minRunnerVersion, r.Version),
			Subject:  pos.version.Ptr(),
		})
	}
	if d := checkRunnerURL(r.URL); d != nil {
		d.Subject = pos.url.Ptr()
		diags = append(diags, d)
	}
	for _, p := range slices.Sorted(maps.Keys(r.SHA256)) {
		rng := pos.sums[p]
		if !known(p) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unknown platform in runner.sha256",
				Detail:   fmt.Sprintf("%s is not a runner platform; use one of %s.", short(p), strings.Join(platform.Names(), ", ")),
				Subject:  rng.Ptr(),
			})
		}
		if !sha256RE.MatchString(r.SHA256[p]) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Malformed checksum",
				Detail:   fmt.Sprintf("runner.sha256[%s] = %s is not a SHA-256 checksum (64 lower-case hex digits).", short(p), short(r.SHA256[p])),
				Subject:  rng.Ptr(),
			})
		}
	}
	return diags
}

func validateKaniko(k Kaniko, pos map[string]hcl.Range) hcl.Diagnostics {
	return validateTool(toolBlock{"kaniko", "Kaniko", k.Version, kanikoVerRE, "v1.23.2", k.Image}, pos)
}

func validateGolang(g Golang, pos map[string]hcl.Range) hcl.Diagnostics {
	return validateTool(toolBlock{"golang", "Go", g.Version, goVerRE, "1.26.8", g.Image}, pos)
}

// toolBlock is a block naming a tool's version and image (kaniko,
// golang).
type toolBlock struct {
	block, tool, version string
	versionRE            *regexp.Regexp
	example, image       string
}

func validateTool(b toolBlock, pos map[string]hcl.Range) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if !b.versionRE.MatchString(b.version) {
		r := pos["version"]
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Malformed " + b.tool + " version",
			Detail:   fmt.Sprintf("%s.version %s must look like %s.", b.block, short(b.version), b.example),
			Subject:  r.Ptr(),
		})
	}
	if why := imageref.Check(b.image, imageref.Image); why != "" {
		r := pos["image"]
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid " + b.tool + " image",
			Detail:   fmt.Sprintf("%s.image %s is not a valid image reference: %s.", b.block, short(b.image), why),
			Subject:  r.Ptr(),
		})
	}
	return diags
}

// ref makes a full reference from a tag: a bare tag belongs to the
// variant's image; a tag with '/' or ':' is a full reference already.
func (v *Variant) ref(tag string) string {
	if strings.ContainsAny(tag, "/:") {
		return tag
	}
	return v.Image + ":" + tag
}

// finish turns tags into sorted full references and normalises lists.
func (v *Variant) finish() {
	refs := make([]string, 0, len(v.Tags))
	for _, t := range v.Tags {
		refs = append(refs, v.ref(t))
	}
	v.Tags = sortedUnique(refs)
	v.Packages = sortedUnique(v.Packages)
	v.RunnerPackages = sortedUnique(v.RunnerPackages)
	v.Platforms = sortedUnique(v.Platforms)
	if v.Compression == "" {
		v.Compression = CompressionGzip
	}
	v.Runner.URL = strings.TrimRight(v.Runner.URL, "/")
	// Only the sums of the platforms this variant builds.
	sums := map[string]string{}
	for _, p := range v.Platforms {
		sums[p] = v.Runner.SHA256[p]
	}
	v.Runner.SHA256 = sums
}

// sortedUnique sorts a copy of in and drops repeats; never nil, so an
// empty list prints as [] rather than null.
func sortedUnique(in []string) []string {
	out := append([]string{}, in...)
	slices.Sort(out)
	return slices.Compact(out)
}

// known says whether the runner ships for a platform (the platform table).
func known(name string) bool {
	_, ok := platform.Lookup(name)
	return ok
}

// versionLess orders two runner versions (2.329.0) as semantic versions.
func versionLess(a, b string) bool { return semver.Compare("v"+a, "v"+b) < 0 }

// checkTag checks a tags entry: a bare tag, or a full reference (with '/'
// or ':'), which checkReference checks.
func checkTag(t string) string {
	switch {
	case t == "":
		return "it is empty"
	case strings.ContainsAny(t, "/:"):
		return imageref.Check(t, imageref.Tagged)
	case !tagRE.MatchString(t):
		return "a tag is up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'"
	}
	return ""
}

// checkRunnerURL checks the runner download base. The URL becomes a build
// argument, and build arguments are recorded in the image history: it must
// carry no credentials (user info, query), and messages never echo them.
func checkRunnerURL(raw string) *hcl.Diagnostic {
	u, err := url.Parse(raw)
	if err != nil {
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid runner URL",
			Detail:   "runner.url is not a URL: it must be the http(s) base that v<version>/actions-runner-linux-<arch>-<version>.tar.gz is appended to.",
		}
	}
	shown := *u
	shown.User, shown.RawQuery, shown.ForceQuery, shown.Fragment, shown.RawFragment = nil, "", false, "", ""
	safe := short(shown.String())
	switch {
	case u.User != nil:
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Credentials in runner URL",
			Detail: fmt.Sprintf("runner.url %s carries a user name or password: build arguments are recorded in the image history, so credentials never go into the URL. "+
				"Give mirror credentials as a netrc file through the build secret runner_netrc instead (README, \"Runner mirror credentials\").", safe),
		}
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid runner URL",
			Detail:   fmt.Sprintf("runner.url %s has a query or fragment: the tarball path is appended to it, and tokens belong in the build secret runner_netrc, not in the URL.", safe),
		}
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(raw, " \"'`$\\") || needsEscape(raw):
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid runner URL",
			Detail:   fmt.Sprintf("runner.url %s must be an http(s) URL, the base that v<version>/actions-runner-linux-<arch>-<version>.tar.gz is appended to.", safe),
		}
	}
	return nil
}
