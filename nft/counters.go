package nft

import (
	"fmt"

	"github.com/google/nftables"
)

// InboundDropped reads the inbound_dropped counter: packets of the agent
// answering connections to undeclared inbound ports. It is read on every
// metrics scrape, so it opens and closes its own netlink connection.
func InboundDropped(cfg Config) (uint64, error) {
	cfg, err := cfg.validated()
	if err != nil {
		return 0, err
	}
	c, err := connect(cfg)
	if err != nil {
		return 0, fmt.Errorf("nft: read counter %s: %w", CounterInboundDropped, err)
	}
	table := &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}
	obj, err := c.GetObject(&nftables.CounterObj{Table: table, Name: CounterInboundDropped})
	if err != nil {
		return 0, fmt.Errorf("nft: read counter %s: %w", CounterInboundDropped, err)
	}
	co, ok := obj.(*nftables.CounterObj)
	if !ok {
		return 0, fmt.Errorf("nft: read counter %s: got a %T", CounterInboundDropped, obj)
	}
	return co.Packets, nil
}
