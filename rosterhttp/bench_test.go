package rosterhttp

import (
	"encoding/json"
	"fmt"
	"testing"

	"mellium.im/xmpp/jid"
)

// rosterBody returns a backend answer with n contacts in a mix of the
// accepted forms.
func rosterBody(n int) []byte {
	contacts := make(map[string]any, n)
	for i := range n {
		v := map[string]any{"name": fmt.Sprintf("Contact Number %d", i)}
		switch i % 4 {
		case 0:
			v["groups"] = []string{"Friends", "Work"}
		case 1:
			v["groups"] = map[string]bool{"Family": true}
			v["subscription"] = "to"
		case 2:
			v["groups"] = []string{}
		}
		contacts[fmt.Sprintf("Contact.%d@Example.com", i)] = v
	}
	body, err := json.Marshal(contacts)
	if err != nil {
		panic(err)
	}
	return body
}

func BenchmarkParse(b *testing.B) {
	owner := jid.MustParse("john@example.com")
	for _, n := range []int{20, 1000} {
		body := rosterBody(n)
		b.Run(fmt.Sprint(n, "contacts"), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				r, err := Parse(body, owner)
				if err != nil || len(r.Items) != n {
					b.Fatalf("%d items, %v", len(r.Items), err)
				}
			}
		})
	}
}
