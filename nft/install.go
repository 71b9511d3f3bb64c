package nft

import (
	"fmt"

	"github.com/google/nftables"
)

// Install writes the table for cfg in one atomic netlink batch. A table of
// the same name left by a crashed run is replaced in the same batch, so
// there is never a moment with two tables, with none, or with half of one:
// the kernel applies the batch whole or not at all.
func Install(cfg Config) error {
	cfg, err := cfg.validated()
	if err != nil {
		return err
	}
	c, err := connect(cfg)
	if err != nil {
		return fmt.Errorf("nft: install table inet %s: %w", cfg.Table, err)
	}
	table := clearTable(c, cfg.Table)
	table = c.AddTable(table)
	rules := ruleset(cfg)
	for i := range rules {
		rules[i].chain.Table = table
		c.AddChain(&rules[i].chain)
	}
	for i := range rules {
		for _, exprs := range rules[i].rules {
			c.AddRule(&nftables.Rule{Table: table, Chain: &rules[i].chain, Exprs: exprs})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: install table inet %s: %w", cfg.Table, err)
	}
	return nil
}

// Remove deletes the table. A table that does not exist is not an error:
// Remove runs on every exit path, including after a failed Install.
func Remove(cfg Config) error {
	cfg, err := cfg.validated()
	if err != nil {
		return err
	}
	c, err := connect(cfg)
	if err != nil {
		return fmt.Errorf("nft: remove table inet %s: %w", cfg.Table, err)
	}
	clearTable(c, cfg.Table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: remove table inet %s: %w", cfg.Table, err)
	}
	return nil
}

// clearTable queues "add table; delete table": the add makes the delete
// valid whether or not the table exists (adding an existing table without
// NLM_F_EXCL is a no-op), so a batch that starts with it never fails on a
// missing table and never deletes anything but ours.
func clearTable(c *nftables.Conn, name string) *nftables.Table {
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	c.AddTable(t)
	c.DelTable(t)
	return t
}

// connect returns a netlink connection to cfg's network namespace.
func connect(cfg Config) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(cfg.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return c, nil
}
