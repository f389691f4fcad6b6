package devmode

import (
	"context"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/server/users"
)

// printBanner tells a developer what is being served and how to try it. It runs once, so a
// generated dev secret is shown once (DESIGN: "logged once") and never reaches the log stream.
func printBanner(ctx context.Context, o Options, c client.Reader, storeName string) error {
	var clients latchkeyv1.OAuthClientList
	if err := c.List(ctx, &clients); err != nil {
		return fmt.Errorf("list clients: %w", err)
	}
	// The banner is composed in memory and written once, so one write error covers it all.
	var b strings.Builder
	w := &b
	fmt.Fprintf(w, "\nLatchkey dev issuer — DEVELOPMENT ONLY: in-process objects, published secrets, no TLS.\n\n")
	fmt.Fprintf(w, "  issuer     %s\n", o.Issuer)
	fmt.Fprintf(w, "  discovery  %s/.well-known/openid-configuration\n", o.Issuer)
	fmt.Fprintf(w, "  token      %s/token\n", o.Issuer)
	fmt.Fprintf(w, "  state      %s\n", storeName)
	fmt.Fprintf(w, "  manifests  %s (namespace %q)\n\n", o.Manifests, o.Namespace)

	var curl string
	for i := range clients.Items {
		oc := &clients.Items[i]
		id := oc.EffectiveClientID()
		ready := "not ready"
		for _, cond := range oc.Status.Conditions {
			if cond.Type == latchkeyv1.ConditionReady {
				ready = string(cond.Status) + " (" + cond.Reason + ")"
				if cond.Status == "True" {
					ready = "ready"
				}
			}
		}
		grants := make([]string, 0, 3)
		for _, g := range oc.EffectiveGrantTypes() {
			grants = append(grants, string(g))
		}
		fmt.Fprintf(w, "  client %-14s %s, %s, %s\n", id, oc.Spec.Type, strings.Join(grants, "+"), ready)
		if !oc.UsesClientSecret() {
			continue
		}
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: oc.Namespace, Name: oc.EffectiveSecretName()}, &s); err != nil {
			fmt.Fprintf(w, "         secret         (Secret %s not found)\n", oc.EffectiveSecretName())
			continue
		}
		secret := string(s.Data[latchkeyv1.ClientSecretDataClientSecret])
		fmt.Fprintf(w, "         secret         %s\n", secret)
		if curl == "" && oc.AllowsGrant(latchkeyv1.GrantClientCredentials) && secret != "" {
			scope := strings.Join(oc.Spec.Scopes, " ")
			curl = fmt.Sprintf("curl -s -u '%s:%s' -d grant_type=client_credentials -d scope='%s' %s/token", id, secret, scope, o.Issuer)
		}
	}
	if line := demoUserLine(ctx, o, c); line != "" {
		fmt.Fprintf(w, "\n  %s\n", line)
	}
	if curl != "" {
		fmt.Fprintf(w, "\nGet a client_credentials token:\n\n  %s\n", curl)
	}
	fmt.Fprintf(w, "\nLog in with a browser and see the tokens: %s/demo\n\n", o.Issuer)
	if _, err := io.WriteString(o.Out, b.String()); err != nil {
		return fmt.Errorf("write banner: %w", err)
	}
	return nil
}

// DemoPassword is the password of the demo user in config/samples/users.yaml. The banner shows it
// only after checking that a user's hash really matches it, so an edited users file is never
// described wrongly.
const DemoPassword = "latchkey-demo"

// demoUserLine names the users who log in with DemoPassword, or says where the users come from.
func demoUserLine(ctx context.Context, o Options, c client.Reader) string {
	dir := users.NewDirectory(c, o.Namespace, o.UsersSecret)
	var names []string
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: o.UsersSecret}, &s); err != nil {
		return fmt.Sprintf("users      none (no Secret %q in %s): the login page will refuse everyone", o.UsersSecret, o.Manifests)
	}
	f, err := users.ParseFile(s.Data[latchkeyv1.UsersDataKey])
	if err != nil {
		return fmt.Sprintf("users      Secret %q is invalid: %v", o.UsersSecret, err)
	}
	for _, u := range f.Users() {
		if _, err := dir.Authenticate(ctx, u.Username, DemoPassword); err == nil {
			names = append(names, u.Username)
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("users      %d from Secret %q (passwords as in your manifests)", f.Len(), o.UsersSecret)
	}
	return fmt.Sprintf("user       %s / password %s   (DEV ONLY: change config/samples/users.yaml for anything real)", strings.Join(names, ", "), DemoPassword)
}
