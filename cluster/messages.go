package cluster

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/hashicorp/memberlist"
)

// MessageHandler receives a gossip message of the type it was registered
// for. from is the sender's node ID; payload is the handler's own copy. It
// runs on memberlist's receive goroutine and must not block: hand work to
// your own goroutine.
type MessageHandler func(from string, payload []byte)

// Message types the cluster itself uses.
const (
	msgLeaveIntent byte = 1 // the sender is leaving gracefully
)

// FirstUserMessage is the lowest message type other packages may use;
// types below it are reserved for the cluster itself.
const FirstUserMessage = 16

// MaxBroadcastSize bounds a broadcast payload: broadcasts ride on gossip
// UDP packets (1400 bytes, less headers, label and encryption overhead).
const MaxBroadcastSize = 1024

// RegisterHandler installs the handler for message type t. Registering a
// type twice, or a reserved type, panics: it is a wiring mistake.
func (c *Cluster) RegisterHandler(t byte, h MessageHandler) {
	if t < FirstUserMessage {
		panic(fmt.Sprintf("cluster: message type %d is reserved", t))
	}
	c.handlersMu.Lock()
	defer c.handlersMu.Unlock()
	if _, dup := c.handlers[t]; dup {
		panic(fmt.Sprintf("cluster: message type %d registered twice", t))
	}
	c.handlers[t] = h
}

// encodeMessage frames a message: type, sender ID length, sender ID, payload.
func (c *Cluster) encodeMessage(t byte, payload []byte) []byte {
	b := make([]byte, 0, 2+len(c.id)+len(payload))
	b = append(b, t, byte(len(c.id)))
	b = append(b, c.id...)
	return append(b, payload...)
}

func (c *Cluster) handleMessage(b []byte) {
	if len(b) < 2 || len(b) < 2+int(b[1]) {
		c.logger.Warn("dropping malformed gossip message", "bytes", len(b))
		return
	}
	t, from := b[0], string(b[2:2+int(b[1])])
	if t == msgLeaveIntent {
		c.members.leaveIntent(from)
		return
	}
	c.handlersMu.RLock()
	h := c.handlers[t]
	c.handlersMu.RUnlock()
	if h == nil {
		c.logger.Debug("no handler for gossip message", "type", t, "from", from)
		return
	}
	// memberlist may reuse b after we return.
	h(from, append([]byte(nil), b[2+int(b[1]):]...))
}

// broadcast is a queued gossip broadcast; with a name, a newer broadcast
// with the same name replaces it in the queue.
type broadcast struct {
	msg  []byte
	name string
}

func (b *broadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*broadcast)
	return ok && b.name != "" && o.name == b.name
}
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

type namedBroadcast struct{ broadcast }

func (b *namedBroadcast) Name() string { return b.name }

// Broadcast gossips a message to every member, best effort: it rides on
// gossip packets and is retransmitted about RetransmitMult*log(N+1) times.
func (c *Cluster) Broadcast(t byte, payload []byte) error {
	return c.queueBroadcast(t, "", payload)
}

// BroadcastLatest is Broadcast for state where only the latest value
// matters: a queued, not yet fully sent broadcast with the same type and
// key is replaced.
func (c *Cluster) BroadcastLatest(t byte, key string, payload []byte) error {
	return c.queueBroadcast(t, strconv.Itoa(int(t))+"/"+key, payload)
}

func (c *Cluster) queueBroadcast(t byte, name string, payload []byte) error {
	if len(payload) > MaxBroadcastSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(payload), MaxBroadcastSize)
	}
	if c.closed.Load() || c.ml == nil {
		return ErrShutdown
	}
	b := broadcast{msg: c.encodeMessage(t, payload), name: name}
	if name != "" {
		c.broadcasts.QueueBroadcast(&namedBroadcast{b})
	} else {
		c.broadcasts.QueueBroadcast(&b)
	}
	return nil
}

// SendTo sends a message to one member over TCP (reliable, any size).
func (c *Cluster) SendTo(node string, t byte, payload []byte) error {
	if c.closed.Load() || c.ml == nil {
		return ErrShutdown
	}
	n, ok := c.memberNode(node)
	if !ok {
		return fmt.Errorf("%w: %s is not an alive member", ErrUnknownMember, node)
	}
	if err := c.ml.SendReliable(n, c.encodeMessage(t, payload)); err != nil {
		return fmt.Errorf("send to %s: %w", node, err)
	}
	return nil
}

// announceLeave tells every alive member, directly and in parallel, that
// this node is leaving, so they list it as left rather than dead. Best
// effort; each send is bounded by the gossip TCP timeout.
func (c *Cluster) announceLeave() {
	msg := c.encodeMessage(msgLeaveIntent, nil)
	var wg sync.WaitGroup
	for _, m := range c.members.list() {
		n, ok := c.memberNode(m.ID)
		if m.ID == c.id || !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.ml.SendReliable(n, msg); err != nil {
				c.logger.Debug("leave intent not delivered", "member", n.Name, "error", err)
			}
		}()
	}
	wg.Wait()
}
