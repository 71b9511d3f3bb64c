package nft

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Install writes the table for cfg in one atomic netlink batch. A table of
// the same name left by a crashed run is replaced in the same batch, so
// there is never a moment with two tables, with none, or with half of one:
// the kernel applies a batch whole or not at all.
func Install(cfg Config) error {
	cfg, err := cfg.validated()
	if err != nil {
		return err
	}
	if err := install(cfg); err != nil {
		return fmt.Errorf("nft: install table inet %s: %w", cfg.Table, err)
	}
	return nil
}

// install picks one of two batches. Deleting a table costs the kernel an
// RCU grace period (over 10 ms on a busy machine, even for a table created
// earlier in the same batch), so when no table of our name exists, the
// batch creates it exclusively (NLM_F_EXCL) and deletes nothing. If one
// appears between the check and the batch, the exclusive create fails the
// whole batch with EEXIST and the replacing batch runs instead.
func install(cfg Config) error {
	c, err := connect(cfg)
	if err != nil {
		return err
	}
	exists, err := tableExists(c, cfg.Table)
	if err != nil {
		return err
	}
	if !exists {
		err := createTable(c, cfg)
		if !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
	return replaceTable(c, cfg)
}

// createTable creates the table and its contents in one batch that fails
// whole, with EEXIST, if a table of the name exists.
func createTable(c *nftables.Conn, cfg Config) error {
	table := c.CreateTable(&nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet})
	if err := queueRuleset(c, table, cfg); err != nil {
		return err
	}
	return c.Flush()
}

// replaceTable deletes any table of the name and creates ours in one batch.
func replaceTable(c *nftables.Conn, cfg Config) error {
	table := clearTable(c, cfg.Table)
	c.AddTable(table)
	if err := queueRuleset(c, table, cfg); err != nil {
		return err
	}
	return c.Flush()
}

// queueRuleset queues the sets and counter, every chain, then every rule,
// of the ruleset.
func queueRuleset(c *nftables.Conn, table *nftables.Table, cfg Config) error {
	if err := queueSets(c, table, cfg); err != nil {
		return fmt.Errorf("queue sets: %w", err)
	}
	if cfg.FastPath != nil {
		for _, fs := range fastSets(table) {
			_ = c.AddSet(fs.set, fs.elems) // queued; errors surface at Flush
		}
	}
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
// NLM_F_EXCL changes nothing), so a batch that starts with it never fails
// on a missing table and never deletes anything but ours.
func clearTable(c *nftables.Conn, name string) *nftables.Table {
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	c.AddTable(t)
	c.DelTable(t)
	return t
}

// tableExists reports whether an inet table of that name exists.
func tableExists(c *nftables.Conn, name string) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
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
