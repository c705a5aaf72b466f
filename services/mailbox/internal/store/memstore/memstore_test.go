package memstore_test

import (
	"testing"

	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/memstore"
	"github.com/postcove/postcove/services/mailbox/internal/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts storetest.Options) store.Store {
		s := memstore.New(memstore.Options{MaxMessageSize: opts.MaxMessageSize})
		t.Cleanup(func() { s.Close() })
		return s
	})
}
