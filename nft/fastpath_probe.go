package nft

import (
	"fmt"
	"os"

	"github.com/google/nftables"
)

// ProbeFastPath reports which queue flavour the kernel takes for the fast
// path: the nft `queue` statement (CONFIG_NFT_QUEUE) where it exists, else
// the xt NFQUEUE target through nft_compat. It writes the fast path's sets
// and filter rules into a throw-away table in a regular chain (no hook, so
// no packet ever sees it) and deletes the table in the same batch: nothing
// is left behind and no traffic is touched. The error names what the
// kernel refused when neither works.
func ProbeFastPath(cfg Config, queueNum uint16) (FastPath, error) {
	cfg, err := cfg.validated()
	if err != nil {
		return FastPath{}, err
	}
	var errs [2]error
	for i, native := range []bool{true, false} {
		fp := FastPath{QueueNum: queueNum, NativeQueue: native}
		if errs[i] = probeBatch(cfg, fp); errs[i] == nil {
			return fp, nil
		}
	}
	return FastPath{}, fmt.Errorf("nft: fast path unavailable: nft queue: %v; xt NFQUEUE via nft_compat: %v", errs[0], errs[1])
}

func probeBatch(cfg Config, fp FastPath) error {
	c, err := connect(cfg)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("forge_probe_%d", os.Getpid())
	table := clearTable(c, name)
	c.AddTable(table)
	for _, fs := range fastSets(table) {
		if err := c.AddSet(fs.set, fs.elems); err != nil {
			return err
		}
	}
	chain := c.AddChain(&nftables.Chain{Name: "probe", Table: table})
	for _, exprs := range fastFilterRules(fp) {
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs})
	}
	// The owner rules' event mask (their jumps name a chain the probe
	// table lacks).
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: fastOwnerRules()[0]})
	for _, exprs := range fastNATRules() {
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs})
	}
	c.DelTable(table)
	return c.Flush()
}
