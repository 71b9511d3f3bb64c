package nft

import (
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
)

// Named sets and the counter of the table. Rules refer to sets by name,
// so `nft list table` reads as the policy it is.
const (
	// SetSupervisorPorts holds the DNS and health ports: on local
	// addresses the agent reaches them directly. The proxy's own port is
	// not in it: a connection to it is redirected like any other, and the
	// engine denies it as a loop, with an audit line.
	SetSupervisorPorts = "supervisor_ports"
	// SetLocalUDPPorts holds the DNS port and the allowed_local_ports.
	SetLocalUDPPorts = "local_udp_ports"
	// SetInboundPorts holds the declared inbound TCP ports.
	SetInboundPorts = "inbound_ports"
	// CounterInboundDropped counts the agent's packets of inbound
	// connections to undeclared ports (InboundDropped reads it).
	CounterInboundDropped = "inbound_dropped"
)

// portSet is one named set of ports with its elements.
type portSet struct {
	name  string
	ports []uint16
}

// portSets returns the table's sets for a validated config, each sorted
// and without duplicates.
func portSets(cfg Config) []portSet {
	self := []uint16{cfg.DNSPort}
	if cfg.HealthPort != 0 {
		self = append(self, cfg.HealthPort)
	}
	return []portSet{
		{SetSupervisorPorts, uniq(self)},
		{SetLocalUDPPorts, uniq(append([]uint16{cfg.DNSPort}, cfg.LocalPorts...))},
		{SetInboundPorts, uniq(cfg.InboundPorts)},
	}
}

func uniq(ports []uint16) []uint16 {
	out := slices.Clone(ports)
	slices.Sort(out)
	return slices.Compact(out)
}

// queueSets queues the sets with their elements and the counter object.
func queueSets(c *nftables.Conn, table *nftables.Table, cfg Config) error {
	for _, ps := range portSets(cfg) {
		set := &nftables.Set{Table: table, Name: ps.name, KeyType: nftables.TypeInetService}
		elems := make([]nftables.SetElement, len(ps.ports))
		for i, p := range ps.ports {
			elems[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)}
		}
		if err := c.AddSet(set, elems); err != nil {
			return err
		}
	}
	c.AddObj(&nftables.CounterObj{Table: table, Name: CounterInboundDropped})
	return nil
}
