// Package deploy holds the deployment recipes (Terraform for Compute
// Engine and Cloud Run, a container image, a systemd unit, Kubernetes
// manifests). Its tests check their security properties by parsing them:
// no provider can be downloaded and no cloud reached from the tests.
package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"gopkg.in/yaml.v3"

	"github.com/sekisho/sekisho/internal/config"
)

// tfBlock is a parsed block with the source it came from.
type tfBlock struct {
	*hclsyntax.Block
	src []byte
}

// attr returns the source text of the block's attribute name ("" if absent).
func (b tfBlock) attr(name string) string {
	a, ok := b.Body.Attributes[name]
	if !ok {
		return ""
	}
	r := a.Expr.Range()
	return string(b.src[r.Start.Byte:r.End.Byte])
}

// blocks returns the nested blocks of the given type.
func (b tfBlock) blocks(typ string) []tfBlock {
	var out []tfBlock
	for _, nb := range b.Body.Blocks {
		if nb.Type == typ {
			out = append(out, tfBlock{nb, b.src})
		}
	}
	return out
}

// walk calls f for b and every block inside it.
func (b tfBlock) walk(f func(tfBlock)) {
	f(b)
	for _, nb := range b.Body.Blocks {
		tfBlock{nb, b.src}.walk(f)
	}
}

// module parses every .tf file of dir and returns its top-level blocks.
func module(t *testing.T, dir string) []tfBlock {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s: %v", dir, err)
	}
	var out []tfBlock
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, diags := hclsyntax.ParseConfig(src, f, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", f, diags.Error())
		}
		for _, b := range file.Body.(*hclsyntax.Body).Blocks {
			out = append(out, tfBlock{b, src})
		}
	}
	return out
}

func resource(t *testing.T, blocks []tfBlock, typ, name string) tfBlock {
	t.Helper()
	for _, b := range blocks {
		if b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == typ && b.Labels[1] == name {
			return b
		}
	}
	t.Fatalf("no resource %s.%s", typ, name)
	return tfBlock{}
}

func resources(blocks []tfBlock, typ string) []tfBlock {
	var out []tfBlock
	for _, b := range blocks {
		if b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == typ {
			out = append(out, b)
		}
	}
	return out
}

var secretName = regexp.MustCompile(`(?i)password|secret|token|_key$`)

// Properties both modules must have: no broad role, secrets only through
// Secret Manager (no value in Terraform state, no secret in a plain env
// var), every variable and output described.
func checkCommon(t *testing.T, blocks []tfBlock) {
	for _, b := range blocks {
		b.walk(func(in tfBlock) {
			if role := in.attr("role"); strings.Contains(role, "roles/owner") || strings.Contains(role, "roles/editor") ||
				strings.Contains(role, "Admin\"") || strings.Contains(role, "roles/iam.serviceAccountTokenCreator") {
				t.Errorf("%s: broad role %s", in.DefRange(), role)
			}
			if in.Type == "env" && secretName.MatchString(strings.Trim(in.attr("name"), `"`)) && in.attr("value") != "" {
				t.Errorf("%s: env %s holds a secret as a plain value: use value_source.secret_key_ref", in.DefRange(), in.attr("name"))
			}
		})
		if b.Type == "resource" && b.Labels[0] == "google_secret_manager_secret_version" {
			t.Errorf("%s: a secret's value in Terraform (state holds it in the clear): add versions with gcloud", b.DefRange())
		}
		if (b.Type == "variable" || b.Type == "output") && b.attr("description") == "" {
			t.Errorf("%s %q has no description", b.Type, b.Labels[0])
		}
	}
}

func TestTerraformGCE(t *testing.T) {
	blocks := module(t, "terraform/gce")
	checkCommon(t, blocks)
	app := resource(t, blocks, "google_compute_instance", "app")
	for _, ni := range app.blocks("network_interface") {
		if len(ni.blocks("access_config")) > 0 {
			t.Error("the app VM has an external IP (access_config)")
		}
	}
	gw := resource(t, blocks, "google_compute_instance", "sekisho")
	if gw.blocks("network_interface")[0].blocks("access_config")[0].attr("nat_ip") != "google_compute_address.sekisho.address" {
		t.Error("sekisho's VM does not use the static address")
	}
	resource(t, blocks, "google_compute_router_nat", "nat")
	for _, fw := range resources(blocks, "google_compute_firewall") {
		ranges, accounts, tags := fw.attr("source_ranges"), fw.attr("source_service_accounts"), fw.attr("target_tags")
		var ports []string
		for _, a := range fw.blocks("allow") {
			ports = append(ports, a.attr("ports"))
		}
		p := strings.Join(ports, " ")
		switch {
		case strings.Contains(ranges, "0.0.0.0/0") && (tags != `["sekisho"]` || p != `["80", "443"]`):
			t.Errorf("%s: open to the internet beyond sekisho's 80 and 443: targets %s ports %s", fw.Labels[1], tags, p)
		case strings.Contains(tags, "dify-app") && accounts != "[google_service_account.sekisho.email]":
			t.Errorf("%s: the app is reachable from %s%s, not from sekisho's service account alone", fw.Labels[1], ranges, accounts)
		case strings.Contains(p, `"22"`) && !strings.Contains(tags, "dify-app") && ranges != "var.admin_ssh_ranges":
			t.Errorf("%s: SSH open from %s", fw.Labels[1], ranges)
		}
		if fw.attr("source_ranges") == "" && accounts == "" {
			t.Errorf("%s: no source: open to all", fw.Labels[1])
		}
	}
	sql := resource(t, blocks, "google_sql_database_instance", "sekisho")
	if ipc := sql.blocks("settings")[0].blocks("ip_configuration")[0]; ipc.attr("ipv4_enabled") != "false" {
		t.Error("sekisho's Cloud SQL has a public IP")
	}
	renderedConfigValid(t, "terraform/gce/sekisho.yaml.tftpl", map[string]string{
		"project": "acme-prod", "domain": "dify.example.com", "acme_email": "ops@example.com", "domain_suffix": "example.com",
		"oauth_client_id": "123.apps.googleusercontent.com", "app_url": "http://10.10.0.2:80",
		"store": `store: {driver: postgres, url: "gcp-secret:projects/acme-prod/secrets/sekisho-database-url/versions/latest"}`,
	})
}

func TestTerraformCloudRun(t *testing.T) {
	blocks := module(t, "terraform/cloudrun")
	checkCommon(t, blocks)
	flowise := resource(t, blocks, "google_cloud_run_v2_service", "flowise")
	if flowise.attr("ingress") != `"INGRESS_TRAFFIC_INTERNAL_ONLY"` {
		t.Errorf("Flowise's ingress is %s, want internal only", flowise.attr("ingress"))
	}
	for _, m := range resources(blocks, "google_cloud_run_v2_service_iam_member") {
		if m.attr("name") == "google_cloud_run_v2_service.flowise.name" && m.attr("member") != `"serviceAccount:${google_service_account.sekisho.email}"` {
			t.Errorf("Flowise is invokable by %s, not sekisho's service account alone", m.attr("member"))
		}
	}
	gw := resource(t, blocks, "google_cloud_run_v2_service", "sekisho")
	if gw.blocks("template")[0].blocks("vpc_access")[0].attr("egress") != `"ALL_TRAFFIC"` {
		t.Error("sekisho's egress does not go through the VPC: Flowise's internal ingress would refuse it")
	}
	if gw.blocks("template")[0].attr("service_account") != "google_service_account.sekisho.email" {
		t.Error("sekisho does not run as its own service account")
	}
	cfg, err := os.ReadFile("terraform/cloudrun/sekisho.yaml.example")
	if err != nil {
		t.Fatal(err)
	}
	validConfig(t, "sekisho.yaml.example", strings.ReplaceAll(string(cfg), "PROJECT", "acme-prod"))
}

// renderedConfigValid fills a templatefile's ${name}s and validates it.
func renderedConfigValid(t *testing.T, path string, vars map[string]string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
	}
	if m := regexp.MustCompile(`\$\{[a-z_]+\}`).FindString(s); m != "" {
		t.Fatalf("%s: %s is not filled by the test (nor by main.tf?)", path, m)
	}
	validConfig(t, path, s)
}

func validConfig(t *testing.T, name, src string) {
	t.Helper()
	c, err := config.Parse(name, []byte(src))
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		t.Errorf("the shipped config does not pass validation:\n%v", err)
	}
}

func TestTerraformFormatted(t *testing.T) {
	tf, err := exec.LookPath("terraform")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("terraform is not installed; CI has it")
		}
		t.Skip("terraform is not installed")
	}
	out, err := exec.Command(tf, "fmt", "-check", "-recursive", "-diff", "terraform").CombinedOutput()
	if err != nil {
		t.Fatalf("terraform fmt -check: %v\n%s", err, out)
	}
}

func TestSystemdUnitHardened(t *testing.T) {
	f, err := os.Open("systemd/sekisho.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			got[k] = append(got[k], v)
		}
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
		"StateDirectory": "sekisho", "PrivateTmp": "yes", "ExecReload": "/bin/kill -HUP $MAINPID",
	} {
		if len(got[k]) != 1 || got[k][0] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	// verify wants the binary to exist: point the unit at a stand-in.
	dir := t.TempDir()
	stub := filepath.Join(dir, "sekisho")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit, _ := os.ReadFile("systemd/sekisho.service")
	copyPath := filepath.Join(dir, "sekisho.service")
	os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/sekisho", stub)), 0o644)
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || strings.Contains(string(out), "sekisho.service:") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestKubernetesManifests(t *testing.T) {
	var kz struct{ Resources []string }
	readYAML(t, "kubernetes/kustomization.yaml", &kz)
	kinds := map[string]map[string]any{}
	for _, r := range kz.Resources {
		var doc map[string]any
		readYAML(t, filepath.Join("kubernetes", r), &doc)
		kinds[doc["kind"].(string)] = doc
	}
	for _, k := range []string{"Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} {
		if kinds[k] == nil {
			t.Errorf("kustomization has no %s", k)
		}
	}
	dep := kinds["Deployment"]
	spec := dep["spec"].(map[string]any)
	if r, _ := spec["replicas"].(int); r < 2 {
		t.Errorf("replicas = %v, want at least 2", spec["replicas"])
	}
	pod := spec["template"].(map[string]any)["spec"].(map[string]any)
	if psc := pod["securityContext"].(map[string]any); psc["runAsNonRoot"] != true {
		t.Error("the pod may run as root")
	}
	c := pod["containers"].([]any)[0].(map[string]any)
	sc := c["securityContext"].(map[string]any)
	if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false || sc["privileged"] != false {
		t.Errorf("container security context: %v", sc)
	}
	if drop := sc["capabilities"].(map[string]any)["drop"].([]any); len(drop) != 1 || drop[0] != "ALL" {
		t.Errorf("capabilities drop %v, want ALL", drop)
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if p := c[probe].(map[string]any)["httpGet"].(map[string]any)["path"]; p != "/.sekisho/healthz" {
			t.Errorf("%s path %v", probe, p)
		}
	}
	if args := strings.Join(toStrings(c["args"]), " "); !strings.Contains(args, "--watch") {
		t.Errorf("args %q: without --watch, a ConfigMap edit would need a restart", args)
	}
	cm := kinds["ConfigMap"]["data"].(map[string]any)["sekisho.yaml"].(string)
	validConfig(t, "configmap sekisho.yaml", cm)
}

func TestContainerImage(t *testing.T) {
	src, err := os.ReadFile("container/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user, health string
	for _, line := range strings.Split(string(src), "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 0:
		case f[0] == "FROM":
			froms = append(froms, f[1])
		case f[0] == "USER":
			user = f[1]
		case f[0] == "HEALTHCHECK":
			health = line
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[len(froms)-1], "gcr.io/distroless/static") {
		t.Errorf("stages %v: want a build stage and a distroless static final stage", froms)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("USER %q: the image must run as non-root", user)
	}
	if health == "" {
		t.Error("no HEALTHCHECK")
	}
	if !strings.Contains(string(src), "CGO_ENABLED=0") {
		t.Error("the binary is not built static (CGO_ENABLED=0)")
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
