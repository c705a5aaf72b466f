package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// The subscriptions file is dovecot's, in the Maildir: version 2 starts
// with "V\t2" and an empty line, then one name a line with the hierarchy
// separator written as a tab, so it does not depend on the separator
// configured. A version-1 file (no header) lists names with dovecot's
// default Maildir++ separator, "."; it is read and rewritten as version 2.
const subscriptionsName = "subscriptions"

func (m *mailboxes) readSubscriptions() (map[string]bool, error) {
	data, err := os.ReadFile(filepath.Join(m.root, subscriptionsName))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read subscriptions: %w", err)
	}
	return parseSubscriptions(string(data)), nil
}

func parseSubscriptions(data string) map[string]bool {
	lines := strings.Split(data, "\n")
	sep := "."
	if len(lines) > 0 && lines[0] == "V\t2" {
		lines, sep = lines[1:], "\t"
	}
	subs := make(map[string]bool)
	for _, l := range lines {
		if l == "" {
			continue
		}
		if name, err := store.CanonicalName(strings.ReplaceAll(l, sep, store.Separator)); err == nil {
			subs[name] = true
		}
	}
	return subs
}

// writeSubscriptions replaces the file (user lock held).
func (m *mailboxes) writeSubscriptions(names []string) error {
	var b strings.Builder
	b.WriteString("V\t2\n\n")
	for _, n := range names {
		b.WriteString(strings.ReplaceAll(n, store.Separator, "\t"))
		b.WriteByte('\n')
	}
	if err := writeFileSync(filepath.Join(m.root, subscriptionsName), []byte(b.String())); err != nil {
		return fmt.Errorf("write subscriptions: %w", err)
	}
	return nil
}

func sortedKeys(set map[string]bool) []string {
	var out []string
	for k, ok := range set {
		if ok {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, store.CompareNames)
	return out
}

func sortInfos(infos []store.MailboxInfo) {
	slices.SortFunc(infos, func(a, b store.MailboxInfo) int { return store.CompareNames(a.Name, b.Name) })
}
