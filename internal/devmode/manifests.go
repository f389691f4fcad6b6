// Package devmode runs Latchkey with no cluster: `latchkey --dev`. Objects come from YAML files
// into controller-runtime's in-memory object store (the fake client), the same reconcilers run
// in a small loop that honours their RequeueAfter, and the same token server reads from that
// store. Token state is in memory, or in Redis with --redis-url. Only where objects come from and
// where token state is kept differ from a cluster install.
package devmode

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// LoadManifests reads every .yaml/.yml file in dir (not recursive; kustomization files are
// skipped) and returns the SigningKey, OAuthClient, Secret and ConfigMap objects in them.
// Objects without metadata.namespace land in namespace. Any other kind is an error naming the
// file, so a typo never silently drops a client.
func LoadManifests(scheme *runtime.Scheme, dir, namespace string) ([]client.Object, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, "kustomization.") || (!strings.HasSuffix(n, ".yaml") && !strings.HasSuffix(n, ".yml")) {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []client.Object
	for _, n := range names {
		path := filepath.Join(dir, n)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read manifests: %w", err)
		}
		docs, err := splitDocuments(b)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		for i, doc := range docs {
			obj, gvk, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("decode %s document %d: %w", path, i+1, err)
			}
			switch obj.(type) {
			case *latchkeyv1.SigningKey, *latchkeyv1.OAuthClient, *corev1.Secret, *corev1.ConfigMap:
			default:
				return nil, fmt.Errorf("%s document %d: kind %s is not supported in --dev (SigningKey, OAuthClient, Secret, ConfigMap)", path, i+1, gvk.Kind)
			}
			co := obj.(client.Object)
			if co.GetNamespace() == "" {
				co.SetNamespace(namespace)
			}
			if s, ok := co.(*corev1.Secret); ok {
				// The API server folds stringData into data; the object store does not.
				for k, v := range s.StringData {
					if s.Data == nil {
						s.Data = map[string][]byte{}
					}
					s.Data[k] = []byte(v)
				}
				s.StringData = nil
			}
			objs = append(objs, co)
		}
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("no objects in %s: --manifests needs SigningKey and OAuthClient YAML files", dir)
	}
	return objs, nil
}

func splitDocuments(b []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
