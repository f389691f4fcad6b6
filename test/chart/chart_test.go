package chart

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

const testIssuer = "https://auth.example.com"

// The value sets every test renders: the defaults (with the one required value), every optional
// feature on, and an external Redis instead of the evaluation one.
var (
	defaultOptions     = Options{Values: map[string]any{"issuer": testIssuer}}
	allFeaturesOptions = Options{ValuesFiles: []string{filepath.Join("testdata", "all-features.yaml")}}
	externalRedis      = Options{Values: map[string]any{
		"issuer": testIssuer,
		"redis":  map[string]any{"enabled": false, "existingSecret": "redis-credentials", "existingSecretKey": "url"},
	}}
)

var variants = []struct {
	name string
	opts Options
}{
	{"defaults", defaultOptions},
	{"all features", allFeaturesOptions},
	{"external redis", externalRedis},
}

func render(t *testing.T, o Options) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Render(t.Context(), o)
	if err != nil {
		t.Fatalf("render the chart: %v", err)
	}
	if len(objs) == 0 {
		t.Fatal("the chart rendered no objects")
	}
	return objs
}

func convert[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	var v T
	if err := Convert(o, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

func TestHelmLint(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			vals, err := ValuesArgs(v.opts, dir)
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"lint", "--strict", Dir(), "--kube-version", KubeVersion}, vals...)
			out, err := Helm(t.Context(), args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(string(out), "0 chart(s) failed") {
				t.Fatalf("helm lint did not pass:\n%s", out)
			}
		})
	}
}

// TestPodSecurity checks every pod the chart can run: the Latchkey Deployment, the evaluation
// Redis and the `helm test` pod.
func TestPodSecurity(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs := render(t, v.opts)
			pods := map[string]corev1.PodSpec{}
			for _, o := range Find(objs, "Deployment", "") {
				pods["Deployment "+o.GetName()] = convert[appsv1.Deployment](t, o).Spec.Template.Spec
			}
			for _, o := range Find(objs, "StatefulSet", "") {
				pods["StatefulSet "+o.GetName()] = convert[appsv1.StatefulSet](t, o).Spec.Template.Spec
			}
			for _, o := range Find(objs, "Pod", "") {
				pods["Pod "+o.GetName()] = convert[corev1.Pod](t, o).Spec
			}
			wantPods := 2 // Latchkey and the helm test pod
			if v.opts.Values["redis"] == nil {
				wantPods++ // the evaluation Redis
			}
			if len(pods) != wantPods {
				t.Fatalf("want %d pod templates, found %d: %v", wantPods, len(pods), slices.Collect(maps.Keys(pods)))
			}
			for name, spec := range pods {
				checkPodSecurity(t, name, spec)
			}
		})
	}
}

func checkPodSecurity(t *testing.T, name string, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot must be true", name)
	}
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext.runAsUser must be set and not root", name)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile must be RuntimeDefault", name)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false (a token is mounted only where needed)", name)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: must not share host namespaces", name)
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		sc := c.SecurityContext
		where := fmt.Sprintf("%s container %s", name, c.Name)
		switch {
		case sc == nil:
			t.Errorf("%s: no securityContext", where)
			continue
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s: allowPrivilegeEscalation must be false", where)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s: must not be privileged", where)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s: readOnlyRootFilesystem must be true", where)
		case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
			t.Errorf("%s: runAsNonRoot must be true", where)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s: capabilities must drop ALL and add none, got %+v", where, sc.Capabilities)
		case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
			t.Errorf("%s: seccompProfile must be RuntimeDefault", where)
		}
		if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
			t.Errorf("%s: no CPU request", where)
		}
		if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
			t.Errorf("%s: no memory request", where)
		}
		if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
			t.Errorf("%s: no memory limit", where)
		}
		if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.ContainsAny(c.Image, ":@") {
			t.Errorf("%s: image %q must be pinned by tag or digest", where, c.Image)
		}
	}
}

// TestDeployment checks the Latchkey Deployment against what issue 5 asks of it.
func TestDeployment(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs := render(t, v.opts)
			d, err := Deployment(objs)
			if err != nil {
				t.Fatal(err)
			}
			wantReplicas := int32(2)
			if v.name == "all features" {
				wantReplicas = 3
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas != wantReplicas {
				t.Errorf("replicas = %v, want %d", d.Spec.Replicas, wantReplicas)
			}
			pod := d.Spec.Template.Spec
			if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds <= 10 {
				t.Errorf("terminationGracePeriodSeconds = %v, must exceed the server's 10s drain", pod.TerminationGracePeriodSeconds)
			}
			if pod.Affinity == nil && len(pod.TopologySpreadConstraints) == 0 {
				t.Error("replicas are not spread: no affinity and no topologySpreadConstraints")
			}
			for _, tsc := range pod.TopologySpreadConstraints {
				if tsc.LabelSelector == nil {
					t.Errorf("topology spread constraint %s has no labelSelector", tsc.TopologyKey)
				}
			}
			if !reflect.DeepEqual(d.Spec.Selector.MatchLabels, pickLabels(d.Spec.Template.Labels, d.Spec.Selector.MatchLabels)) {
				t.Errorf("the pod labels %v do not match the selector %v", d.Spec.Template.Labels, d.Spec.Selector.MatchLabels)
			}
			if d.Spec.Template.Spec.ServiceAccountName == "" {
				t.Error("no serviceAccountName")
			}

			if len(pod.Containers) != 1 {
				t.Fatalf("want 1 container, got %d", len(pod.Containers))
			}
			c := pod.Containers[0]
			if got, ok := Flag(c.Args, "leader-elect"); !ok || got != "true" {
				t.Errorf("--leader-elect = %q, want true", got)
			}
			if got, _ := Flag(c.Args, "issuer"); got != testIssuer {
				t.Errorf("--issuer = %q, want %q", got, testIssuer)
			}
			for _, f := range []string{"listen", "metrics-bind-address", "health-probe-bind-address", "mode", "signing-key", "users-secret", "client-secret-grace-period", "zap-log-level"} {
				if _, ok := Flag(c.Args, f); !ok {
					t.Errorf("no --%s in %q", f, c.Args)
				}
			}
			for _, a := range c.Args {
				if strings.Contains(a, "redis://") || strings.Contains(a, "redis-url") || strings.Contains(strings.ToLower(a), "password") {
					t.Errorf("argument %q carries Redis credentials: they belong in LATCHKEY_REDIS_URL from a Secret", a)
				}
			}

			env := map[string]corev1.EnvVar{}
			for _, e := range c.Env {
				env[e.Name] = e
			}
			if e := env["POD_NAMESPACE"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
				t.Errorf("POD_NAMESPACE must come from the downward API, got %+v", e)
			}
			if e := env["LATCHKEY_REDIS_URL"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.Value != "" {
				t.Errorf("LATCHKEY_REDIS_URL must come from a Secret, got %+v", e)
			} else if v.name == "external redis" && (e.ValueFrom.SecretKeyRef.Name != "redis-credentials" || e.ValueFrom.SecretKeyRef.Key != "url") {
				t.Errorf("LATCHKEY_REDIS_URL must come from redis.existingSecret, got %+v", e.ValueFrom.SecretKeyRef)
			} else if len(Find(objs, "Secret", e.ValueFrom.SecretKeyRef.Name)) == 0 && v.name != "external redis" {
				t.Errorf("LATCHKEY_REDIS_URL refers to Secret %s, which the chart does not render", e.ValueFrom.SecretKeyRef.Name)
			}

			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if want := map[string]int32{"http": 8080, "metrics": 9090, "health": 8081}; !reflect.DeepEqual(ports, want) {
				t.Errorf("container ports = %v, want %v", ports, want)
			}
			for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("no HTTP %s probe", name)
				}
			}
			if p := c.ReadinessProbe; p != nil && p.HTTPGet != nil && (p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "http") {
				t.Errorf("readiness probe = %s on %s, want /readyz on the http port", p.HTTPGet.Path, p.HTTPGet.Port.String())
			}

			// The API token: no automount, one projected token at the usual path, read-only.
			var projected *corev1.ProjectedVolumeSource
			tmp := false
			for _, vol := range pod.Volumes {
				if vol.Projected != nil {
					projected = vol.Projected
				}
				if vol.EmptyDir != nil && vol.Name == "tmp" {
					tmp = true
				}
			}
			if projected == nil || !slices.ContainsFunc(projected.Sources, func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil }) {
				t.Error("no projected service account token")
			}
			if !tmp {
				t.Error("no emptyDir for /tmp (the root filesystem is read-only)")
			}
			mounts := map[string]corev1.VolumeMount{}
			for _, m := range c.VolumeMounts {
				mounts[m.MountPath] = m
			}
			if m, ok := mounts["/var/run/secrets/kubernetes.io/serviceaccount"]; !ok || !m.ReadOnly {
				t.Errorf("the token must be mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount, got %+v", m)
			}
			if _, ok := mounts["/tmp"]; !ok {
				t.Error("/tmp is not mounted")
			}

			// The Service of the token server reaches the http port.
			svc := convert[corev1.Service](t, Find(objs, "Service", d.Name)[0])
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" {
				t.Errorf("the token server Service must target the http port, got %+v", svc.Spec.Ports)
			}
			if !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Selector.MatchLabels) {
				t.Errorf("Service selector %v differs from the Deployment's %v", svc.Spec.Selector, d.Spec.Selector.MatchLabels)
			}
			if len(Find(objs, "PodDisruptionBudget", "")) != 1 {
				t.Error("no PodDisruptionBudget")
			}
		})
	}
}

func pickLabels(from, keys map[string]string) map[string]string {
	out := map[string]string{}
	for k := range keys {
		if v, ok := from[k]; ok {
			out[k] = v
		}
	}
	return out
}

// TestOptionalObjects checks that each optional feature renders its object, and that the
// defaults render none of them.
func TestOptionalObjects(t *testing.T) {
	optional := []string{"ServiceMonitor", "Ingress", "HTTPRoute", "NetworkPolicy"}
	def := render(t, defaultOptions)
	for _, kind := range optional {
		if n := len(Find(def, kind, "")); n != 0 {
			t.Errorf("the defaults render %d %s, want none", n, kind)
		}
	}
	if len(Find(def, "Secret", "latchkey-users")) != 0 {
		t.Error("the defaults render a users Secret")
	}
	if len(Find(def, "SigningKey", "default")) != 1 {
		t.Error("the defaults render no SigningKey named default")
	}

	all := render(t, allFeaturesOptions)
	for _, kind := range optional {
		if len(Find(all, kind, "")) == 0 {
			t.Errorf("all features render no %s", kind)
		}
	}
	if n := len(Find(all, "NetworkPolicy", "")); n != 2 {
		t.Errorf("want NetworkPolicies for Latchkey and Redis, got %d", n)
	}
	users := Find(all, "Secret", "latchkey-users")
	if len(users) != 1 {
		t.Fatal("all features render no users Secret")
	}
	if got := users[0].GetLabels()["auth.latchkey.dev/secret-type"]; got != "users" {
		t.Errorf("the users Secret is labelled secret-type=%q, want users (the manager caches only labelled Secrets)", got)
	}
	var list []map[string]any
	if err := yaml.Unmarshal([]byte(fmt.Sprint(users[0].Object["stringData"].(map[string]any)["users.yaml"])), &list); err != nil || len(list) != 2 {
		t.Errorf("users.yaml does not hold the two users: %v %v", list, err)
	}
	sk := Find(all, "SigningKey", "primary")
	if len(sk) != 1 {
		t.Fatal("all features render no SigningKey named primary")
	}
	if spec := sk[0].Object["spec"]; !reflect.DeepEqual(spec, map[string]any{"algorithm": "EdDSA", "rotationInterval": "168h", "prePublish": "2h", "retention": "48h"}) {
		t.Errorf("SigningKey spec = %v", spec)
	}
	if got := sk[0].GetAnnotations()["helm.sh/hook-delete-policy"]; got != "hook-failed" {
		t.Errorf("the SigningKey hook's delete policy is %q: anything that includes before-hook-creation would delete every key on upgrade", got)
	}
	sts := convert[appsv1.StatefulSet](t, Find(all, "StatefulSet", "")[0])
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Error("redis.persistence.enabled renders no volumeClaimTemplate")
	}
	d, _ := Deployment(all)
	if got, _ := Flag(d.Spec.Template.Spec.Containers[0].Args, "watch-namespaces"); got != "team-a,team-b" {
		t.Errorf("--watch-namespaces = %q", got)
	}
	if got, _ := Flag(d.Spec.Template.Spec.Containers[0].Args, "leader-election-namespace"); got != "latchkey-leases" {
		t.Errorf("--leader-election-namespace = %q", got)
	}
	if !strings.HasSuffix(d.Spec.Template.Spec.Containers[0].Image, "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") {
		t.Errorf("image.digest is not used: %s", d.Spec.Template.Spec.Containers[0].Image)
	}
}

// TestRedisSecrets checks how the Redis URL reaches Latchkey: from the generated password with
// the evaluation Redis, from redis.url in the chart's Secret, or from redis.existingSecret.
func TestRedisSecrets(t *testing.T) {
	objs := render(t, defaultOptions)
	pw := convert[corev1.Secret](t, Find(objs, "Secret", "latchkey-redis")[0])
	url := convert[corev1.Secret](t, Find(objs, "Secret", "latchkey-redis-url")[0])
	password := string(pw.Data["password"])
	if len(password) != 32 {
		t.Fatalf("generated Redis password has %d characters, want 32", len(password))
	}
	want := "redis://:" + password + "@latchkey-redis.latchkey-system.svc:6379/0"
	if got := string(url.Data["redis-url"]); got != want {
		t.Errorf("redis-url = %q, want %q", got, want)
	}
	if !strings.Contains(string(pw.Data["redis.conf"]), "requirepass "+password) {
		t.Error("redis.conf does not require the password")
	}

	withURL := render(t, Options{Values: map[string]any{"issuer": testIssuer, "redis": map[string]any{"enabled": false, "url": "redis-sentinel://:pw@s1:26379,s2:26379/0?master=mymaster"}}})
	if len(Find(withURL, "StatefulSet", "")) != 0 {
		t.Error("redis.url still deploys the evaluation Redis")
	}
	s := convert[corev1.Secret](t, Find(withURL, "Secret", "latchkey-redis-url")[0])
	if got := string(s.Data["redis-url"]); got != "redis-sentinel://:pw@s1:26379,s2:26379/0?master=mymaster" {
		t.Errorf("redis-url = %q", got)
	}

	ext := render(t, externalRedis)
	if n := len(Find(ext, "Secret", "")); n != 0 {
		t.Errorf("redis.existingSecret renders %d Secrets, want none", n)
	}
	if len(Find(ext, "StatefulSet", "")) != 0 {
		t.Error("redis.existingSecret still deploys the evaluation Redis")
	}
}

// ruleSet flattens a Role's rules to "group/resource: verbs" lines, sorted.
func ruleSet(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				out = append(out, fmt.Sprintf("%s/%s: %s", g, res, strings.Join(r.Verbs, ",")))
			}
		}
	}
	sort.Strings(out)
	return out
}

var (
	clusterOAuthClientRules = []string{
		"auth.latchkey.dev/oauthclients/status: get,update,patch",
		"auth.latchkey.dev/oauthclients: get,list,watch",
	}
	clientSecretRules = []string{
		"/secrets: get,list,watch,create,update,patch,delete",
		"auth.latchkey.dev/oauthclients/finalizers: update",
		"events.k8s.io/events: create,patch",
	}
	releaseNamespaceRules = []string{
		"/configmaps: get,list,watch,create,update",
		"/secrets: get,list,watch,create,update,delete",
		"auth.latchkey.dev/signingkeys/finalizers: update",
		"auth.latchkey.dev/signingkeys/status: get,update,patch",
		"auth.latchkey.dev/signingkeys: get,list,watch",
		"events.k8s.io/events: create,patch",
	}
	leaderElectionRules = []string{
		"/events: create,patch",
		"coordination.k8s.io/leases: get,list,watch,create,update,patch,delete",
	}
)

// TestRBAC pins every permission the chart grants (README.md, "RBAC", explains each), checks that
// no rule uses a wildcard, and that every binding binds the chart's ServiceAccount to a role the
// chart renders.
func TestRBAC(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want map[string][]string // "Kind namespace/name" -> rules
	}{
		{"defaults: client Secrets cluster-wide", defaultOptions, map[string][]string{
			"ClusterRole /latchkey-oauthclients":            clusterOAuthClientRules,
			"ClusterRole /latchkey-client-secrets":          clientSecretRules,
			"Role latchkey-system/latchkey":                 releaseNamespaceRules,
			"Role latchkey-system/latchkey-leader-election": leaderElectionRules,
		}},
		{"watchNamespaces: client Secrets per namespace", allFeaturesOptions, map[string][]string{
			"ClusterRole /latchkey-oauthclients":            clusterOAuthClientRules,
			"Role team-a/latchkey-client-secrets":           clientSecretRules,
			"Role team-b/latchkey-client-secrets":           clientSecretRules,
			"Role latchkey-system/latchkey":                 releaseNamespaceRules,
			"Role latchkey-leases/latchkey-leader-election": leaderElectionRules,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.opts)
			got := map[string][]string{}
			for _, o := range append(Find(objs, "Role", ""), Find(objs, "ClusterRole", "")...) {
				var role rbacv1.ClusterRole // a Role's fields are a subset
				if err := Convert(o, &role); err != nil {
					t.Fatal(err)
				}
				for _, r := range role.Rules {
					for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames} {
						for _, s := range field {
							if strings.Contains(s, "*") {
								t.Errorf("%s %s: wildcard %q in rule %+v", o.GetKind(), o.GetName(), s, r)
							}
						}
					}
					if len(r.NonResourceURLs) > 0 {
						t.Errorf("%s %s: nonResourceURLs %v", o.GetKind(), o.GetName(), r.NonResourceURLs)
					}
					for _, v := range r.Verbs {
						if v == "escalate" || v == "bind" || v == "impersonate" {
							t.Errorf("%s %s: verb %s", o.GetKind(), o.GetName(), v)
						}
					}
				}
				got[fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())] = ruleSet(role.Rules)
			}
			if !reflect.DeepEqual(got, tc.want) {
				gj, _ := json.MarshalIndent(got, "", "  ")
				t.Errorf("the chart grants:\n%s", gj)
			}

			sa := Find(objs, "ServiceAccount", "")
			if len(sa) != 1 {
				t.Fatalf("want 1 ServiceAccount, got %d", len(sa))
			}
			d, _ := Deployment(objs)
			if d.Spec.Template.Spec.ServiceAccountName != sa[0].GetName() {
				t.Errorf("the Deployment runs as %q, the chart creates %q", d.Spec.Template.Spec.ServiceAccountName, sa[0].GetName())
			}
			bindings := append(Find(objs, "RoleBinding", ""), Find(objs, "ClusterRoleBinding", "")...)
			if len(bindings) != len(got) {
				t.Errorf("%d roles but %d bindings", len(got), len(bindings))
			}
			for _, o := range bindings {
				var b rbacv1.RoleBinding
				if err := Convert(o, &b); err != nil {
					t.Fatal(err)
				}
				roleNS := o.GetNamespace()
				if b.RoleRef.Kind == "ClusterRole" {
					roleNS = ""
				}
				if _, ok := got[fmt.Sprintf("%s %s/%s", b.RoleRef.Kind, roleNS, b.RoleRef.Name)]; !ok {
					t.Errorf("%s %s binds %s %s, which the chart does not render", o.GetKind(), o.GetName(), b.RoleRef.Kind, b.RoleRef.Name)
				}
				want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa[0].GetName(), Namespace: DefaultNamespace}}
				if !reflect.DeepEqual(b.Subjects, want) {
					t.Errorf("%s %s binds %+v, want only the chart's ServiceAccount", o.GetKind(), o.GetName(), b.Subjects)
				}
			}
		})
	}
}

// TestRBACCoversControllerMarkers checks that the chart grants every permission the controllers'
// kubebuilder markers declare (config/rbac/role.yaml, written by `make generate`), so a controller
// that starts to need a new verb fails here, not with "forbidden" in a cluster.
func TestRBACCoversControllerMarkers(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatalf("read the generated role (run `make generate`): %v", err)
	}
	objs, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var needed []string
	for _, o := range objs {
		var role rbacv1.ClusterRole
		if err := Convert(o, &role); err != nil {
			t.Fatal(err)
		}
		for _, r := range role.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						needed = append(needed, g+"/"+res+" "+v)
					}
				}
			}
		}
	}
	if len(needed) == 0 {
		t.Fatal("config/rbac/role.yaml grants nothing")
	}
	for _, v := range variants[:2] {
		granted := map[string]bool{}
		for _, o := range append(Find(render(t, v.opts), "Role", ""), Find(render(t, v.opts), "ClusterRole", "")...) {
			var role rbacv1.ClusterRole
			if err := Convert(o, &role); err != nil {
				t.Fatal(err)
			}
			for _, r := range role.Rules {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, verb := range r.Verbs {
							granted[g+"/"+res+" "+verb] = true
						}
					}
				}
			}
		}
		for _, n := range needed {
			if !granted[n] {
				t.Errorf("%s: the controllers' markers need %q, the chart does not grant it (templates/rbac.yaml)", v.name, n)
			}
		}
	}
}

// TestKustomizeManagerMatchesChart checks that config/manager (the install without Helm) runs the
// same container as the chart with its default values: arguments, environment, probes, ports,
// resources, security and volumes. Only the image and the Redis Secret's name may differ.
func TestKustomizeManagerMatchesChart(t *testing.T) {
	chartDeploy, err := Deployment(render(t, defaultOptions))
	if err != nil {
		t.Fatal(err)
	}
	kustomizeDeploy, err := Deployment(kustomizeObjects(t, filepath.Join(RepoRoot(), "config", "manager")))
	if err != nil {
		t.Fatal(err)
	}
	normalize := func(d *appsv1.Deployment) (corev1.Container, corev1.PodSpec) {
		pod := d.Spec.Template.Spec
		c := pod.Containers[0]
		c.Image = ""
		for i, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				c.Env[i].ValueFrom.SecretKeyRef.Name = ""
			}
		}
		pod.Containers = nil
		pod.Affinity = nil
		pod.TopologySpreadConstraints = nil
		return c, pod
	}
	cc, cp := normalize(chartDeploy)
	kc, kp := normalize(kustomizeDeploy)
	if !reflect.DeepEqual(cc, kc) {
		a, _ := yaml.Marshal(cc)
		b, _ := yaml.Marshal(kc)
		t.Errorf("config/manager/manager.yaml's container differs from the chart's:\nchart:\n%s\nkustomize:\n%s", a, b)
	}
	if !reflect.DeepEqual(cp, kp) {
		a, _ := yaml.Marshal(cp)
		b, _ := yaml.Marshal(kp)
		t.Errorf("config/manager/manager.yaml's pod differs from the chart's:\nchart:\n%s\nkustomize:\n%s", a, b)
	}
	if *chartDeploy.Spec.Replicas != *kustomizeDeploy.Spec.Replicas {
		t.Errorf("replicas: chart %d, kustomize %d", *chartDeploy.Spec.Replicas, *kustomizeDeploy.Spec.Replicas)
	}
}

// TestNamesFit renders with the longest release name Helm allows and with a 63-character
// fullnameOverride, and checks that every name and label value fits Kubernetes' limits and that
// no two objects collide.
func TestNamesFit(t *testing.T) {
	long := strings.Repeat("r", 53) // helm's limit on release names
	cases := []struct {
		name string
		opts Options
	}{
		{"longest release name, all features", Options{Release: long, ValuesFiles: allFeaturesOptions.ValuesFiles}},
		{"longest release name, defaults", Options{Release: long, Values: defaultOptions.Values}},
		{"63-character fullnameOverride", Options{ValuesFiles: allFeaturesOptions.ValuesFiles, Values: map[string]any{"fullnameOverride": strings.Repeat("f", 63)}}},
		{"release name containing the chart name", Options{Release: "latchkey-prod", ValuesFiles: allFeaturesOptions.ValuesFiles}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			objs := render(t, o)
			seen := map[string]bool{}
			for _, obj := range objs {
				key := fmt.Sprintf("%s %s/%s", obj.GetKind(), obj.GetNamespace(), obj.GetName())
				if seen[key] {
					t.Errorf("two objects are %s", key)
				}
				seen[key] = true
				limit := 63
				if obj.GetKind() == "StatefulSet" {
					limit = 52 // its pods get a controller-revision-hash label "<name>-<10 characters>"
				}
				if obj.GetKind() == "CustomResourceDefinition" {
					limit = 253
				}
				if n := len(obj.GetName()); n > limit {
					t.Errorf("%s: name is %d characters, more than %d", key, n, limit)
				}
				if obj.GetKind() != "CustomResourceDefinition" {
					if errs := validation.IsDNS1123Subdomain(obj.GetName()); len(errs) > 0 {
						t.Errorf("%s: %v", key, errs)
					}
				}
				if obj.GetKind() == "Service" {
					if errs := validation.IsDNS1035Label(obj.GetName()); len(errs) > 0 {
						t.Errorf("%s: %v", key, errs)
					}
				}
				checkLabels(t, key, obj.GetLabels())
				if tmpl, ok, _ := unstructured.NestedStringMap(obj.Object, "spec", "template", "metadata", "labels"); ok {
					checkLabels(t, key+" pod template", tmpl)
				}
			}
		})
	}
}

func checkLabels(t *testing.T, where string, labels map[string]string) {
	t.Helper()
	for k, v := range labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("%s: label key %q: %v", where, k, errs)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("%s: label %s=%q: %v", where, k, v, errs)
		}
	}
}

// TestValuesRejected checks that values.schema.json and the templates refuse bad values with a
// message that says what to fix.
func TestValuesRejected(t *testing.T) {
	cases := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"unknown top-level key", map[string]any{"issuer": testIssuer, "replicas": 3}, "additional properties 'replicas' not allowed"},
		{"unknown nested key", map[string]any{"issuer": testIssuer, "redis": map[string]any{"pasword": "x"}}, "additional properties 'pasword' not allowed"},
		{"unknown key in a Kubernetes type", map[string]any{"issuer": testIssuer, "securityContext": map[string]any{"runAsUsr": 1}}, "additional properties 'runAsUsr' not allowed"},
		{"missing issuer", map[string]any{}, "issuer is required"},
		{"http issuer", map[string]any{"issuer": "http://auth.example.com"}, "issuer"},
		{"issuer with a trailing slash", map[string]any{"issuer": "https://auth.example.com/"}, "issuer"},
		{"a plain password", map[string]any{"issuer": testIssuer, "users": map[string]any{"create": true, "list": []any{map[string]any{"username": "alice", "passwordHash": "hunter2"}}}}, "passwordHash"},
		{"two Redis sources", map[string]any{"issuer": testIssuer, "redis": map[string]any{"url": "redis://r:6379"}}, "give one Redis only"},
		{"no Redis", map[string]any{"issuer": testIssuer, "redis": map[string]any{"enabled": false}}, "no Redis"},
		{"HTTPRoute without a Gateway", map[string]any{"issuer": testIssuer, "httpRoute": map[string]any{"enabled": true}}, "parentRefs"},
		{"a wrong type", map[string]any{"issuer": testIssuer, "replicaCount": "two"}, "replicaCount"},
		{"a bad duration", map[string]any{"issuer": testIssuer, "signingKey": map[string]any{"rotationInterval": "30 days"}}, "rotationInterval"},
		{"a grace period shorter than the drain", map[string]any{"issuer": testIssuer, "terminationGracePeriodSeconds": 5}, "terminationGracePeriodSeconds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Template(t.Context(), Options{Values: tc.values})
			if err == nil {
				t.Fatalf("values %v rendered; want an error mentioning %q", tc.values, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

// TestSchemaClosed walks values.schema.json: every object with properties refuses others, and
// every other object (a map such as podAnnotations) says what its values must be.
func TestSchemaClosed(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(Dir(), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, node any)
	walk = func(path string, node any) {
		switch n := node.(type) {
		case map[string]any:
			_, hasProps := n["properties"]
			ap, hasAP := n["additionalProperties"]
			if hasProps && ap != false {
				t.Errorf("%s: has properties but additionalProperties is %v, want false", path, ap)
			}
			if n["type"] == "object" && !hasProps {
				if _, isSchema := ap.(map[string]any); !hasAP || !isSchema {
					t.Errorf("%s: an object without properties must give additionalProperties a schema (a typed map)", path)
				}
			}
			for k, v := range n {
				walk(path+"/"+k, v)
			}
		case []any:
			for i, v := range n {
				walk(fmt.Sprintf("%s[%d]", path, i), v)
			}
		}
	}
	walk("#", schema)
}

// valuesPaths lists the dotted paths of values.yaml down to its leaves (lists and maps that
// default to empty are leaves).
func valuesPaths(prefix string, v any) []string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 || prefix == "redis.resources" || prefix == "resources" || prefix == "podSecurityContext" || prefix == "securityContext" || strings.HasPrefix(prefix, "networkPolicy.") && strings.HasSuffix(prefix, "Selector") {
		return []string{prefix}
	}
	var out []string
	for k, sub := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		out = append(out, valuesPaths(p, sub)...)
	}
	sort.Strings(out)
	return out
}

// TestReadmeDocumentsEveryValue checks that the chart README's values table has a row for every
// value in values.yaml, and no row for a value that is gone.
func TestReadmeDocumentsEveryValue(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(Dir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(Dir(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `") {
			key, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
			documented[key] = true
		}
	}
	paths := valuesPaths("", values)
	for _, p := range paths {
		if !documented[p] {
			t.Errorf("values.yaml has %s, README.md's values table does not", p)
		}
	}
	for k := range documented {
		if !slices.Contains(paths, k) {
			t.Errorf("README.md documents %s, which values.yaml does not have", k)
		}
	}
}

// TestCRDsMatchConfig checks that the chart ships exactly the generated CRDs: what
// hack/sync-chart-crds.sh writes now, and, rendered, the same schema as config/crd/bases.
func TestCRDsMatchConfig(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), filepath.Join(RepoRoot(), "hack", "sync-chart-crds.sh"), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/sync-chart-crds.sh: %v\n%s", err, out)
	}
	fresh, _ := filepath.Glob(filepath.Join(dir, "crd-*.yaml"))
	shipped, _ := filepath.Glob(filepath.Join(Dir(), "templates", "crd-*.yaml"))
	if len(fresh) == 0 || len(fresh) != len(shipped) {
		t.Fatalf("the chart ships %d CRD templates, the script writes %d: run `make generate`", len(shipped), len(fresh))
	}
	for _, f := range fresh {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join(Dir(), "templates", filepath.Base(f)))
		if err != nil || string(got) != string(want) {
			t.Errorf("templates/%s is out of date: run `make generate` (never edit it by hand)", filepath.Base(f))
		}
	}

	bases, _ := filepath.Glob(filepath.Join(RepoRoot(), "config", "crd", "bases", "*.yaml"))
	generated := map[string]*unstructured.Unstructured{}
	for _, f := range bases {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			generated[o.GetName()] = o
		}
	}
	rendered := Find(render(t, defaultOptions), "CustomResourceDefinition", "")
	if len(rendered) != len(generated) {
		t.Fatalf("the chart renders %d CRDs, config/crd/bases has %d", len(rendered), len(generated))
	}
	for _, crd := range rendered {
		g, ok := generated[crd.GetName()]
		if !ok {
			t.Errorf("the chart renders CRD %s, which config/crd/bases does not have", crd.GetName())
			continue
		}
		if !reflect.DeepEqual(crd.Object["spec"], g.Object["spec"]) {
			t.Errorf("CRD %s: the chart's spec differs from config/crd/bases", crd.GetName())
		}
		if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s is not kept on uninstall by default (crds.keep)", crd.GetName())
		}
		for k, v := range g.GetAnnotations() {
			if crd.GetAnnotations()[k] != v {
				t.Errorf("CRD %s lost its annotation %s=%s", crd.GetName(), k, v)
			}
		}
	}

	notKept := Find(render(t, Options{Values: map[string]any{"issuer": testIssuer, "crds": map[string]any{"keep": false}}}), "CustomResourceDefinition", "")
	for _, crd := range notKept {
		if _, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
			t.Errorf("crds.keep=false: CRD %s is still kept", crd.GetName())
		}
	}
	if len(notKept) != len(generated) {
		t.Errorf("crds.keep=false renders %d CRDs", len(notKept))
	}
	if n := len(Find(render(t, Options{Values: map[string]any{"issuer": testIssuer, "crds": map[string]any{"enabled": false}}}), "CustomResourceDefinition", "")); n != 0 {
		t.Errorf("crds.enabled=false still renders %d CRDs", n)
	}
}
