package validate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// manifestDir holds the manifests, relative to this package.
const manifestDir = ".."

// kustomization is the part of kustomize's Kustomization used here.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// manifests are the decoded objects, by kind.
type manifests struct {
	deployment     *appsv1.Deployment
	service        *corev1.Service
	configMap      *corev1.ConfigMap
	secret         *corev1.Secret
	serviceAccount *corev1.ServiceAccount
	role           *rbacv1.Role
	roleBinding    *rbacv1.RoleBinding
}

// decodeStrict decodes one YAML document into obj, failing on unknown
// fields and duplicate keys.
func decodeStrict(t *testing.T, file string, data []byte, obj any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func load(t *testing.T) manifests {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(manifestDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	decodeStrict(t, "kustomization.yaml", raw, &k)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: apiVersion/kind %s/%s", k.APIVersion, k.Kind)
	}
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			onDisk = append(onDisk, b)
		}
	}
	listed := slices.Clone(k.Resources)
	sort.Strings(listed)
	if !slices.Equal(onDisk, listed) {
		t.Fatalf("kustomization.yaml resources %v differ from the manifests on disk %v", listed, onDisk)
	}

	var m manifests
	for _, name := range k.Resources {
		data, err := os.ReadFile(filepath.Join(manifestDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte("\n---")) {
			t.Fatalf("%s: keep one object per file", name)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(data, &tm); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var meta *metav1.ObjectMeta
		switch gvk := tm.APIVersion + "/" + tm.Kind; gvk {
		case "apps/v1/Deployment":
			m.deployment = new(appsv1.Deployment)
			decodeStrict(t, name, data, m.deployment)
			meta = &m.deployment.ObjectMeta
		case "v1/Service":
			m.service = new(corev1.Service)
			decodeStrict(t, name, data, m.service)
			meta = &m.service.ObjectMeta
		case "v1/ConfigMap":
			m.configMap = new(corev1.ConfigMap)
			decodeStrict(t, name, data, m.configMap)
			meta = &m.configMap.ObjectMeta
		case "v1/Secret":
			m.secret = new(corev1.Secret)
			decodeStrict(t, name, data, m.secret)
			meta = &m.secret.ObjectMeta
		case "v1/ServiceAccount":
			m.serviceAccount = new(corev1.ServiceAccount)
			decodeStrict(t, name, data, m.serviceAccount)
			meta = &m.serviceAccount.ObjectMeta
		case "rbac.authorization.k8s.io/v1/Role":
			m.role = new(rbacv1.Role)
			decodeStrict(t, name, data, m.role)
			meta = &m.role.ObjectMeta
		case "rbac.authorization.k8s.io/v1/RoleBinding":
			m.roleBinding = new(rbacv1.RoleBinding)
			decodeStrict(t, name, data, m.roleBinding)
			meta = &m.roleBinding.ObjectMeta
		default:
			t.Fatalf("%s: unexpected object %s", name, gvk)
		}
		checkMeta(t, name, meta)
	}
	if m.deployment == nil || m.service == nil || m.configMap == nil || m.secret == nil ||
		m.serviceAccount == nil || m.role == nil || m.roleBinding == nil {
		t.Fatalf("want a Deployment, a Service, a ConfigMap, a Secret, a ServiceAccount, a Role and a RoleBinding, got %+v", m)
	}
	return m
}

// checkMeta validates the name and labels as the API server would.
func checkMeta(t *testing.T, file string, meta *metav1.ObjectMeta) {
	t.Helper()
	for _, msg := range validation.IsDNS1123Subdomain(meta.Name) {
		t.Errorf("%s: metadata.name %q: %s", file, meta.Name, msg)
	}
	if meta.Namespace != "" {
		t.Errorf("%s: leave metadata.namespace to kubectl -n / kustomize", file)
	}
	if errs := metavalidation.ValidateLabels(meta.Labels, field.NewPath("metadata", "labels")); len(errs) > 0 {
		t.Errorf("%s: %v", file, errs.ToAggregate())
	}
}

func TestDeployment(t *testing.T) {
	m := load(t)
	d := m.deployment
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas must be 2: a leader and a standby (leader election on a Lease)")
	}
	checkStrategy(t, d)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		t.Fatalf("selector: %v", err)
	}
	if sel.Empty() || !sel.Matches(labelsOf(d.Spec.Template.Labels)) {
		t.Errorf("the selector %s does not match the pod template labels %v", sel, d.Spec.Template.Labels)
	}
	if errs := metavalidation.ValidateLabels(d.Spec.Template.Labels, field.NewPath("template")); len(errs) > 0 {
		t.Errorf("pod labels: %v", errs.ToAggregate())
	}

	pod := d.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("the pod must run as a non-root user id: %+v", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("the pod needs seccompProfile RuntimeDefault")
	}
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Errorf("leader election needs the service-account token: set automountServiceAccountToken: true in the pod")
	}
	if pod.ServiceAccountName != m.serviceAccount.Name {
		t.Errorf("serviceAccountName %q, want the ServiceAccount %s", pod.ServiceAccountName, m.serviceAccount.Name)
	}
	if a := m.serviceAccount.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("the ServiceAccount should not mount its token everywhere: automountServiceAccountToken: false (the pod asks for it)")
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < 35 {
		t.Errorf("terminationGracePeriodSeconds must leave the 30 s graceful stop room, got %v", g)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	for _, msg := range validation.IsDNS1123Label(c.Name) {
		t.Errorf("container name: %s", msg)
	}
	if c.Image == "" {
		t.Errorf("container image missing")
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatalf("the container has no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("readOnlyRootFilesystem must be true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("allowPrivilegeEscalation must be false")
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities: drop ALL, add none")
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("must not be privileged")
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Errorf("set a memory limit")
	}

	// Ports and probes.
	var admin *corev1.ContainerPort
	for i, p := range c.Ports {
		if p.Name == "admin" {
			admin = &c.Ports[i]
		}
		for _, msg := range validation.IsValidPortName(p.Name) {
			t.Errorf("port name %q: %s", p.Name, msg)
		}
	}
	if admin == nil || admin.ContainerPort != 5380 {
		t.Fatalf("want a container port named admin on 5380, got %+v", c.Ports)
	}
	checkProbe(t, "livenessProbe", c.LivenessProbe, "/healthz")
	checkProbe(t, "readinessProbe", c.ReadinessProbe, "/readyz")
	checkAdvertiseURL(t, c, admin.ContainerPort)

	// Arguments: serve with the mounted config file.
	cfgMount := mountFor(t, c, "config")
	wantArgs := []string{"serve", "--config", cfgMount + "/config.yaml"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args %q, want %q", c.Args, wantArgs)
	}

	// Volumes refer to the ConfigMap and the Secret and to keys they have.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	cmVol := vols["config"]
	if cmVol.ConfigMap == nil || cmVol.ConfigMap.Name != m.configMap.Name {
		t.Fatalf("volume config must be the ConfigMap %s: %+v", m.configMap.Name, cmVol)
	}
	for _, it := range cmVol.ConfigMap.Items {
		if _, ok := m.configMap.Data[it.Key]; !ok {
			t.Errorf("ConfigMap %s has no key %s", m.configMap.Name, it.Key)
		}
	}
	secVol := vols["secrets"]
	if secVol.Secret == nil || secVol.Secret.SecretName != m.secret.Name {
		t.Fatalf("volume secrets must be the Secret %s: %+v", m.secret.Name, secVol)
	}
	secretPaths := map[string]bool{}
	for _, it := range secVol.Secret.Items {
		_, inData := m.secret.Data[it.Key]
		_, inString := m.secret.StringData[it.Key]
		if !inData && !inString {
			t.Errorf("Secret %s has no key %s", m.secret.Name, it.Key)
		}
		secretPaths[mountFor(t, c, "secrets")+"/"+it.Path] = true
	}
	if m := secVol.Secret.DefaultMode; m == nil || *m&0o007 != 0 {
		t.Errorf("secret files must not be world-readable (defaultMode %v)", m)
	}
	for _, mnt := range c.VolumeMounts {
		if !mnt.ReadOnly {
			t.Errorf("mount %s must be readOnly", mnt.Name)
		}
	}

	// The *_FILE variables point at the mounted secrets; secrets are never
	// given as values.
	wantFiles := map[string]bool{"ROSTER_SIDECAR_XMPP_SECRET_FILE": false, "ROSTER_SIDECAR_ADMIN_TOKEN_FILE": false}
	for _, e := range c.Env {
		for _, msg := range validation.IsEnvVarName(e.Name) {
			t.Errorf("env %s: %s", e.Name, msg)
		}
		switch e.Name {
		case "ROSTER_SIDECAR_XMPP_SECRET", "ROSTER_SIDECAR_ADMIN_TOKEN":
			t.Errorf("%s: use the _FILE variant and the mounted Secret", e.Name)
		}
		if _, ok := wantFiles[e.Name]; ok {
			wantFiles[e.Name] = true
			if !secretPaths[e.Value] {
				t.Errorf("%s=%s is not a mounted secret file %v", e.Name, e.Value, secretPaths)
			}
		}
	}
	for name, seen := range wantFiles {
		if !seen {
			t.Errorf("env %s missing", name)
		}
	}

	// Leader election: the Lease in the pod's namespace, the pod's name as
	// the identity, both from the downward API.
	for name, field := range map[string]string{
		"ROSTER_SIDECAR_LEADER_LEASE_NAMESPACE": "metadata.namespace",
		"ROSTER_SIDECAR_LEADER_IDENTITY":        "metadata.name",
		"POD_IP":                                "status.podIP",
	} {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
		if i < 0 {
			t.Errorf("env %s missing", name)
			continue
		}
		if e := c.Env[i]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != field {
			t.Errorf("env %s must come from the downward API field %s, got %+v", name, field, e)
		}
	}
}

// checkAdvertiseURL checks that the pod advertises its admin API at its
// own IP (leader.advertise_url), so that the standby forwards to the
// leader and is ready: POD_IP is defined before the variable that expands
// it, and the port is the admin port.
func checkAdvertiseURL(t *testing.T, c corev1.Container, port int32) {
	t.Helper()
	ip := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_IP" })
	adv := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "ROSTER_SIDECAR_LEADER_ADVERTISE_URL" })
	want := fmt.Sprintf("http://$(POD_IP):%d", port)
	switch {
	case adv < 0:
		t.Errorf("env ROSTER_SIDECAR_LEADER_ADVERTISE_URL missing: without it the standby cannot forward and is never ready")
	case c.Env[adv].Value != want:
		t.Errorf("ROSTER_SIDECAR_LEADER_ADVERTISE_URL=%q, want %q (with admin.tls_cert_file: https)", c.Env[adv].Value, want)
	case ip < 0 || ip > adv:
		t.Errorf("POD_IP must be defined before ROSTER_SIDECAR_LEADER_ADVERTISE_URL, which expands it")
	}
}

// checkStrategy checks that a rolling update can progress when the new
// pods cannot be ready beside the old leader: an old leader that
// advertises no admin URL (a version without forwarding) leaves the new
// standbys unready. So it must be allowed to stop every old pod
// (maxUnavailable at least the replicas), and it starts a new pod first
// (maxSurge at least 1), which takes the lease over once the old leader
// released it.
func checkStrategy(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	s := d.Spec.Strategy
	if s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxUnavailable == nil || s.RollingUpdate.MaxSurge == nil {
		t.Errorf("strategy must be RollingUpdate with maxSurge and maxUnavailable, got %+v", s)
		return
	}
	replicas := int(*d.Spec.Replicas)
	unavailable, err := intstr.GetScaledValueFromIntOrPercent(s.RollingUpdate.MaxUnavailable, replicas, false)
	if err != nil || unavailable < replicas {
		t.Errorf("maxUnavailable %s (%d of %d replicas, %v): a new pod, on standby, is not ready while an old leader that advertises no admin URL runs, so the rollout must be allowed to stop every old pod",
			s.RollingUpdate.MaxUnavailable.String(), unavailable, replicas, err)
	}
	surge, err := intstr.GetScaledValueFromIntOrPercent(s.RollingUpdate.MaxSurge, replicas, true)
	if err != nil || surge < 1 {
		t.Errorf("maxSurge %s: start a new pod before the old ones stop, so that it takes over at once", s.RollingUpdate.MaxSurge.String())
	}
}

// TestLeaderElection checks the Role against the lease the ConfigMap names:
// the pods may get and update that lease and create leases, nothing else;
// the RoleBinding gives the Role to the pods' ServiceAccount.
func TestLeaderElection(t *testing.T) {
	m := load(t)
	var doc struct {
		Leader struct {
			LeaseName string `json:"lease_name"`
		} `json:"leader"`
	}
	if err := yaml.Unmarshal([]byte(m.configMap.Data["config.yaml"]), &doc); err != nil {
		t.Fatal(err)
	}
	lease := doc.Leader.LeaseName
	if lease == "" {
		t.Fatal("config.yaml in the ConfigMap sets no leader.lease_name: two replicas need leader election")
	}
	for _, msg := range validation.IsDNS1123Subdomain(lease) {
		t.Errorf("leader.lease_name %q: %s", lease, msg)
	}
	var named, create bool
	for i, r := range m.role.Rules {
		if !slices.Equal(r.APIGroups, []string{"coordination.k8s.io"}) || !slices.Equal(r.Resources, []string{"leases"}) || len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %d grants more than coordination.k8s.io leases: %+v", i, r)
			continue
		}
		verbs := slices.Sorted(slices.Values(r.Verbs))
		switch {
		case slices.Equal(verbs, []string{"get", "update"}) && slices.Equal(r.ResourceNames, []string{lease}):
			named = true
		case slices.Equal(verbs, []string{"create"}) && len(r.ResourceNames) == 0:
			create = true // a create cannot be restricted by name
		default:
			t.Errorf("rule %d: want get and update on the lease %s only, or create: %+v", i, lease, r)
		}
	}
	if !named || !create {
		t.Errorf("the Role must grant get and update on the lease %s and create on leases: %+v", lease, m.role.Rules)
	}
	rb := m.roleBinding
	if rb.RoleRef.APIGroup != rbacv1.GroupName || rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != m.role.Name {
		t.Errorf("the RoleBinding refers to %+v, want the Role %s", rb.RoleRef, m.role.Name)
	}
	if len(rb.Subjects) != 1 {
		t.Fatalf("want one subject, got %+v", rb.Subjects)
	}
	// No namespace: the RoleBinding's own, where kubectl -n puts the pods.
	if s := rb.Subjects[0]; s.Kind != rbacv1.ServiceAccountKind || s.Name != m.serviceAccount.Name || s.Namespace != "" || s.APIGroup != "" {
		t.Errorf("the subject must be the ServiceAccount %s in the RoleBinding's namespace, got %+v", m.serviceAccount.Name, s)
	}
}

// checkProbe checks an HTTP probe on the admin port.
func checkProbe(t *testing.T, name string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: want an httpGet probe on %s", name, path)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString("admin") {
		t.Errorf("%s: want GET %s on port admin, got %s on %s", name, path, p.HTTPGet.Path, p.HTTPGet.Port.String())
	}
}

// mountFor returns the mount path of volume name in c.
func mountFor(t *testing.T, c corev1.Container, name string) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.Name == name {
			return strings.TrimSuffix(m.MountPath, "/")
		}
	}
	t.Fatalf("volume %s is not mounted", name)
	return ""
}

type labelsOf map[string]string

func (l labelsOf) Has(k string) bool   { _, ok := l[k]; return ok }
func (l labelsOf) Get(k string) string { return l[k] }
func (l labelsOf) Lookup(k string) (string, bool) {
	v, ok := l[k]
	return v, ok
}

func TestService(t *testing.T) {
	m := load(t)
	s := m.service
	if s.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("keep the admin API inside the cluster: type ClusterIP, got %s", s.Spec.Type)
	}
	pod := m.deployment.Spec.Template
	for k, v := range s.Spec.Selector {
		if pod.Labels[k] != v {
			t.Errorf("service selector %s=%s does not match the pod labels %v", k, v, pod.Labels)
		}
	}
	if len(s.Spec.Selector) == 0 {
		t.Errorf("service has no selector")
	}
	if s.Spec.PublishNotReadyAddresses {
		t.Errorf("publishNotReadyAddresses must be false: a pod that is not ready (no leader known, or a leader without the XMPP link) answers refreshes with 503")
	}
	if len(s.Spec.Ports) != 1 {
		t.Fatalf("want one port, got %+v", s.Spec.Ports)
	}
	p := s.Spec.Ports[0]
	if p.TargetPort != intstr.FromString("admin") {
		t.Errorf("targetPort must be the named container port admin, got %s", p.TargetPort.String())
	}
	for _, msg := range validation.IsValidPortNum(int(p.Port)) {
		t.Errorf("port: %s", msg)
	}
}

func TestConfigMapHasNoSecrets(t *testing.T) {
	m := load(t)
	cfg, ok := m.configMap.Data["config.yaml"]
	if !ok {
		t.Fatal("ConfigMap has no config.yaml")
	}
	var doc map[string]any
	if err := yaml.UnmarshalStrict([]byte(cfg), &doc); err != nil {
		t.Fatalf("config.yaml in the ConfigMap: %v", err)
	}
	for _, path := range [][]string{{"xmpp", "secret"}, {"xmpp", "secret_file"}, {"admin", "token"}, {"admin", "token_file"}, {"backend", "headers"}} {
		if sec, ok := doc[path[0]].(map[string]any); ok {
			if _, ok := sec[path[1]]; ok {
				t.Errorf("config.yaml sets %s: secrets belong in the Secret (the env *_FILE variables point there)", strings.Join(path, "."))
			}
		}
	}
}
