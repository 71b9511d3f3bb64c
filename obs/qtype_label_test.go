package obs

import (
	"fmt"
	"testing"

	"go.uber.org/zap"
)

// Junk query types must not push the real ones out of the qtype label
// (issue #11 item 11): after 70 distinct unknown types, TXT, HTTPS, SVCB
// and SRV still count under their own names, and the junk under "other".
func TestQTypeLabelsFixedSet(t *testing.T) {
	m := NewMetrics()
	a := NewAuditor(zap.NewNop(), m, nil)
	for i := range 70 {
		a.DNS(DNSQuery{QName: "junk.test.", QType: fmt.Sprintf("TYPE%d", 1000+i)})
	}
	for _, qt := range []string{"TXT", "HTTPS", "SVCB", "SRV", "A", "AAAA"} {
		a.DNS(DNSQuery{Allowed: true, QName: "ok.test.", QType: qt})
		if got := value(t, m.DNSQueries.WithLabelValues(DecisionAllowed, qt)); got != 1 {
			t.Errorf("qtype %s counted %v times under its own label, want 1", qt, got)
		}
	}
	if got := value(t, m.DNSQueries.WithLabelValues(DecisionDenied, labelOther)); got != 70 {
		t.Errorf("junk qtypes under %q: %v, want 70", labelOther, got)
	}
}
