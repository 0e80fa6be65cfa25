package deploy_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/node"
)

// agentShutdownMargin is what the agent adds to -drain-timeout for leaving
// the cluster at shutdown (node/cmd/sluice: drain + 5s).
const agentShutdownMargin = 5 * time.Second

// manifests is every object in deploy/k8s, by kind and name.
type manifests struct {
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	configMaps   map[string]*corev1.ConfigMap
	pdbs         map[string]*policyv1.PodDisruptionBudget
}

// splitYAML splits a multi-document YAML file, dropping empty documents.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(d, "")) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// decodeStrict decodes doc into out, refusing unknown or duplicate fields.
func decodeStrict(doc []byte, out any) error {
	return yaml.UnmarshalStrict(doc, out)
}

// loadManifests decodes every document of every YAML file in dir into the
// Kubernetes API type its apiVersion and kind name.
func loadManifests(t *testing.T, dir string) manifests {
	t.Helper()
	m := manifests{
		statefulSets: map[string]*appsv1.StatefulSet{}, services: map[string]*corev1.Service{},
		secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{},
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitYAML(b) {
			where := fmt.Sprintf("%s document %d", filepath.Base(f), i+1)
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if head.Metadata.Name == "" {
				t.Errorf("%s: no metadata.name", where)
			}
			var obj any
			var add func()
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 StatefulSet":
				o := &appsv1.StatefulSet{}
				obj, add = o, func() { m.statefulSets[o.Name] = o }
			case "v1 Service":
				o := &corev1.Service{}
				obj, add = o, func() { m.services[o.Name] = o }
			case "v1 Secret":
				o := &corev1.Secret{}
				obj, add = o, func() { m.secrets[o.Name] = o }
			case "v1 ConfigMap":
				o := &corev1.ConfigMap{}
				obj, add = o, func() { m.configMaps[o.Name] = o }
			case "policy/v1 PodDisruptionBudget":
				o := &policyv1.PodDisruptionBudget{}
				obj, add = o, func() { m.pdbs[o.Name] = o }
			default:
				t.Errorf("%s: unexpected %s %s (the test knows StatefulSet, Service, Secret, ConfigMap, PodDisruptionBudget)",
					where, head.APIVersion, head.Kind)
				continue
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Errorf("%s (%s %s): %v", where, head.Kind, head.Metadata.Name, err)
				continue
			}
			add()
		}
	}
	return m
}

// selects reports whether a selector (all of its labels) matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// flagValue returns the value of -name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// containerPort resolves a probe's or service's target port against the
// container's ports: by name or by number.
func containerPort(c corev1.Container, p intstr.IntOrString, proto corev1.Protocol) (corev1.ContainerPort, bool) {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, cp := range c.Ports {
		cpProto := cp.Protocol
		if cpProto == "" {
			cpProto = corev1.ProtocolTCP
		}
		if cpProto != proto {
			continue
		}
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func TestK8sManifests(t *testing.T) {
	m := loadManifests(t, "k8s")
	if len(m.statefulSets) != 1 {
		t.Fatalf("want exactly one StatefulSet, got %d", len(m.statefulSets))
	}
	var sts *appsv1.StatefulSet
	for _, s := range m.statefulSets {
		sts = s
	}
	pod := sts.Spec.Template.Spec
	podLabels := sts.Spec.Template.Labels
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	args := c.Args

	t.Run("statefulset", func(t *testing.T) {
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
			t.Errorf("replicas %v, want 3", sts.Spec.Replicas)
		}
		if sts.Spec.Selector == nil || !selects(sts.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("selector %v does not select the template's labels %v", sts.Spec.Selector, podLabels)
		}
		if expect, _ := flagValue(args, "bootstrap-expect"); sts.Spec.Replicas != nil && expect != fmt.Sprint(*sts.Spec.Replicas) {
			t.Errorf("-bootstrap-expect=%s, want the replica count %d", expect, *sts.Spec.Replicas)
		}
		// No pod is ready before a quorum has formed: ordered start-up would
		// wait for the first pod forever.
		if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("podManagementPolicy %q, want Parallel", sts.Spec.PodManagementPolicy)
		}
		if len(args) == 0 || args[0] != "agent" {
			t.Errorf("args %v do not run the agent", args)
		}
	})

	t.Run("probes", func(t *testing.T) {
		listen, _ := flagValue(args, "listen")
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{
			{"readiness", c.ReadinessProbe, "/readyz"},
			{"liveness", c.LivenessProbe, "/healthz"},
		} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s probe: want an httpGet probe", p.name)
				continue
			}
			if p.probe.HTTPGet.Path != p.path {
				t.Errorf("%s probe path %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
			}
			cp, ok := containerPort(c, p.probe.HTTPGet.Port, corev1.ProtocolTCP)
			if !ok {
				t.Errorf("%s probe port %s is not a container port", p.name, p.probe.HTTPGet.Port.String())
				continue
			}
			if !strings.HasSuffix(listen, fmt.Sprintf(":%d", cp.ContainerPort)) {
				t.Errorf("%s probe hits port %d but the API listens on %q", p.name, cp.ContainerPort, listen)
			}
		}
	})

	t.Run("services", func(t *testing.T) {
		var headless *corev1.Service
		for _, s := range m.services {
			if !selects(s.Spec.Selector, podLabels) {
				t.Errorf("service %s selects %v, not the StatefulSet's pods %v", s.Name, s.Spec.Selector, podLabels)
			}
			for _, sp := range s.Spec.Ports {
				if _, ok := containerPort(c, sp.TargetPort, sp.Protocol); !ok {
					t.Errorf("service %s port %s: target %s/%s is not a container port", s.Name, sp.Name, sp.TargetPort.String(), sp.Protocol)
				}
			}
			if s.Name == sts.Spec.ServiceName {
				headless = s
			}
		}
		if headless == nil {
			t.Fatalf("no Service named %q (the StatefulSet's serviceName)", sts.Spec.ServiceName)
		}
		if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
			t.Errorf("service %s: clusterIP %q publishNotReadyAddresses %v; want a headless service publishing not-ready pods",
				headless.Name, headless.Spec.ClusterIP, headless.Spec.PublishNotReadyAddresses)
		}
		join, _ := flagValue(args, "join")
		if !strings.HasPrefix(join, headless.Name+".") && !strings.HasPrefix(join, headless.Name+":") {
			t.Errorf("-join=%s does not name the headless service %s", join, headless.Name)
		}
		var client bool
		for _, s := range m.services {
			for _, sp := range s.Spec.Ports {
				cp, _ := containerPort(c, sp.TargetPort, sp.Protocol)
				if s.Spec.ClusterIP != corev1.ClusterIPNone && cp.Name == "http" {
					client = true
				}
			}
		}
		if !client {
			t.Error("no client Service exposes the API port")
		}
	})

	t.Run("disruption budget", func(t *testing.T) {
		if len(m.pdbs) != 1 {
			t.Fatalf("want one PodDisruptionBudget, got %d", len(m.pdbs))
		}
		for _, p := range m.pdbs {
			if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.String() != "2" {
				t.Errorf("minAvailable %v, want 2", p.Spec.MinAvailable)
			}
			if p.Spec.Selector == nil || !selects(p.Spec.Selector.MatchLabels, podLabels) {
				t.Errorf("PDB selector %v does not select the pods", p.Spec.Selector)
			}
		}
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		v, ok := flagValue(args, "drain-timeout")
		if !ok {
			t.Fatal("-drain-timeout is not set; set it so the grace period can be checked against it")
		}
		drain, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		if pod.TerminationGracePeriodSeconds == nil {
			t.Fatal("terminationGracePeriodSeconds not set")
		}
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		if grace <= drain+agentShutdownMargin {
			t.Errorf("grace period %v must exceed the drain timeout %v plus the agent's %v for leaving", grace, drain, agentShutdownMargin)
		}
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			t.Error("a preStop hook is set; the agent drains on SIGTERM (and the image has no shell)")
		}
	})

	t.Run("identity and data", func(t *testing.T) {
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		for flagName, want := range map[string]struct{ env, field string }{
			"node-id":      {"POD_NAME", "metadata.name"},
			"gossip-addr":  {"POD_IP", "status.podIP"},
			"cluster-addr": {"POD_IP", "status.podIP"},
		} {
			v, _ := flagValue(args, flagName)
			if !strings.Contains(v, "$("+want.env+")") {
				t.Errorf("-%s=%s does not use $(%s)", flagName, v, want.env)
			}
			e := env[want.env]
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != want.field {
				t.Errorf("env %s is not from fieldRef %s", want.env, want.field)
			}
		}
		dataDir, _ := flagValue(args, "data-dir")
		var mounted string
		for _, vm := range c.VolumeMounts {
			if vm.MountPath == dataDir {
				mounted = vm.Name
			}
		}
		if dataDir == "" || mounted == "" {
			t.Fatalf("-data-dir=%q is not a volume mount", dataDir)
		}
		var claimed bool
		for _, vct := range sts.Spec.VolumeClaimTemplates {
			claimed = claimed || vct.Name == mounted
		}
		if !claimed {
			t.Errorf("the data volume %q is not a volumeClaimTemplate", mounted)
		}
	})

	t.Run("security and resources", func(t *testing.T) {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Fatal("container has no securityContext")
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Error("root file system is not read-only")
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Error("privilege escalation is allowed")
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
			t.Error("capabilities are not all dropped")
		}
		psc := pod.SecurityContext
		nonRoot := (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) ||
			(psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			t.Error("runAsNonRoot is not set")
		}
		if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.FSGroup == nil {
			t.Error("pod securityContext must set a non-zero runAsUser and an fsGroup (for the data volume)")
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				t.Errorf("no %s request", r)
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				t.Errorf("no %s limit", r)
			}
		}
	})

	t.Run("references", func(t *testing.T) {
		secretKey := func(where, name, key string) {
			s, ok := m.secrets[name]
			if !ok {
				t.Errorf("%s: Secret %q is not in the manifests", where, name)
				return
			}
			if key == "" {
				return
			}
			if _, ok := s.StringData[key]; !ok {
				if _, ok := s.Data[key]; !ok {
					t.Errorf("%s: Secret %s has no key %q", where, name, key)
				}
			}
		}
		configKey := func(where, name, key string) {
			cm, ok := m.configMaps[name]
			if !ok {
				t.Errorf("%s: ConfigMap %q is not in the manifests", where, name)
				return
			}
			if _, ok := cm.Data[key]; !ok {
				t.Errorf("%s: ConfigMap %s has no key %q", where, name, key)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				secretKey("env "+e.Name, r.Name, r.Key)
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				configKey("env "+e.Name, r.Name, r.Key)
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil {
				if _, ok := m.secrets[ef.SecretRef.Name]; !ok {
					t.Errorf("envFrom: Secret %q is not in the manifests", ef.SecretRef.Name)
				}
			}
			if ef.ConfigMapRef != nil {
				if _, ok := m.configMaps[ef.ConfigMapRef.Name]; !ok {
					t.Errorf("envFrom: ConfigMap %q is not in the manifests", ef.ConfigMapRef.Name)
				}
			}
		}
		volumes := map[string]bool{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = true
			where := "volume " + v.Name
			switch {
			case v.Secret != nil:
				if len(v.Secret.Items) == 0 {
					secretKey(where, v.Secret.SecretName, "")
				}
				for _, it := range v.Secret.Items {
					secretKey(where, v.Secret.SecretName, it.Key)
				}
			case v.ConfigMap != nil:
				for _, it := range v.ConfigMap.Items {
					configKey(where, v.ConfigMap.Name, it.Key)
				}
				if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
					t.Errorf("%s: ConfigMap %q is not in the manifests", where, v.ConfigMap.Name)
				}
			}
		}
		for _, vct := range sts.Spec.VolumeClaimTemplates {
			volumes[vct.Name] = true
		}
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				t.Errorf("volume mount %s names no volume", vm.Name)
			}
		}
		// Every file flag points into a mounted volume.
		for _, f := range []string{"config", "admin-tokens-file"} {
			v, ok := flagValue(args, f)
			if !ok {
				t.Errorf("-%s is not set", f)
				continue
			}
			var in bool
			for _, vm := range c.VolumeMounts {
				in = in || strings.HasPrefix(v, strings.TrimSuffix(vm.MountPath, "/")+"/")
			}
			if !in {
				t.Errorf("-%s=%s is not under a volume mount", f, v)
			}
		}
	})

	t.Run("bootstrap config", func(t *testing.T) {
		path, _ := flagValue(args, "config")
		var doc string
		for _, vm := range c.VolumeMounts {
			if !strings.HasPrefix(path, vm.MountPath+"/") {
				continue
			}
			file := strings.TrimPrefix(path, vm.MountPath+"/")
			for _, v := range pod.Volumes {
				if v.Name != vm.Name || v.ConfigMap == nil {
					continue
				}
				cm := m.configMaps[v.ConfigMap.Name]
				key := file
				for _, it := range v.ConfigMap.Items {
					if it.Path == file {
						key = it.Key
					}
				}
				if cm != nil {
					doc = cm.Data[key]
				}
			}
		}
		if doc == "" {
			t.Fatalf("-config=%s does not resolve to a ConfigMap key", path)
		}
		cfg, err := node.ParseConfig([]byte(doc))
		if err != nil {
			t.Fatalf("the bootstrap config is refused by Sluice's own validation: %v", err)
		}
		// Every env:NAME secret reference is set in the container.
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = true
		}
		for _, p := range cfg.Providers {
			if name, ok := strings.CutPrefix(p.APIKey, "env:"); ok && !env[name] {
				t.Errorf("provider %s reads %s, which the container's env does not set", p.Name, p.APIKey)
			}
		}
	})
}

// TestComposeSeedConfig checks the compose cluster's seed configuration
// with Sluice's own loader, and that every env:NAME it references is set on
// the nodes by compose.yaml.
func TestComposeSeedConfig(t *testing.T) {
	cfg, err := node.LoadConfig(filepath.Join("compose", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Node struct {
			Environment map[string]string `json:"environment"`
		} `json:"x-node"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	for _, p := range cfg.Providers {
		if name, ok := strings.CutPrefix(p.APIKey, "env:"); ok {
			if _, set := compose.Node.Environment[name]; !set {
				t.Errorf("provider %s reads %s; compose.yaml's nodes do not set it (they set %v)",
					p.Name, p.APIKey, slices.Sorted(maps.Keys(compose.Node.Environment)))
			}
		}
	}
	if !bytes.Contains(b, []byte("aliases: [sluice-peers]")) || !bytes.Contains(b, []byte("-join=sluice-peers:7946")) {
		t.Error("compose.yaml's nodes must join through the sluice-peers alias they all carry")
	}
}
