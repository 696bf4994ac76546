package tedge

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// message is one MQTT message received on the command subscription.
type message struct {
	topic   string
	payload []byte
}

// conn is the MQTT session: it connects in the background, reconnects
// without end, subscribes again on every connection (so that the broker
// sends the retained commands again) and signals each new connection, after
// which the handler publishes its state again (a restarted broker without
// persistence has lost it).
type conn struct {
	c         mqtt.Client
	msgs      chan message
	connected chan struct{}
	log       *slog.Logger
	ackWait   time.Duration

	mu     sync.Mutex
	closed bool // by close: no redial may connect the client again
}

// dial starts the session with the broker (tcp://host:port, ssl://, ws://).
func dial(broker, clientID, subscription string, retry time.Duration, log *slog.Logger) *conn {
	k := &conn{msgs: make(chan message, 1024), connected: make(chan struct{}, 1), log: log, ackWait: 10 * time.Second}
	opts := mqtt.NewClientOptions().
		AddBroker(broker).
		SetClientID(clientID).
		SetCleanSession(true).
		SetKeepAlive(30 * time.Second).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(retry).
		SetMaxReconnectInterval(retry).
		SetOrderMatters(true). // the handler only queues, it never blocks
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			log.Warn("mqtt connection lost; reconnecting", "broker", broker, "error", err)
		}).
		SetOnConnectHandler(func(c mqtt.Client) {
			// Runs in its own goroutine: waiting for the SUBACK is fine.
			t := c.Subscribe(subscription, 1, func(_ mqtt.Client, m mqtt.Message) {
				// Never block paho's router (it also delivers the acknowledgements
				// the handler waits for). A command dropped here is retained: the
				// broker sends it again with the next subscription.
				select {
				case k.msgs <- message{topic: m.Topic(), payload: m.Payload()}:
				default:
					log.Warn("mqtt message dropped: the handler is behind", "topic", m.Topic())
				}
			})
			if !t.WaitTimeout(k.ackWait) || t.Error() != nil {
				log.Warn("mqtt subscribe failed; reconnecting", "topic", subscription, "error", t.Error())
				c.Disconnect(0) // AutoReconnect does not apply to a Disconnect: connect anew
				go k.redial(c)
				return
			}
			log.Info("mqtt connected", "broker", broker, "subscribed", subscription)
			select {
			case k.connected <- struct{}{}:
			default:
			}
		})
	k.c = mqtt.NewClient(opts)
	k.c.Connect() // with ConnectRetry it keeps trying in the background
	return k
}

func (k *conn) redial(c mqtt.Client) {
	time.Sleep(time.Second)
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		c.Connect()
	}
}

// publish publishes one message with QoS 1 and waits for the broker's
// acknowledgement, publishing again across reconnections until it has it or
// ctx ends. Every message tandem publishes is a retained state, so a
// duplicate is harmless.
func (k *conn) publish(ctx context.Context, topic string, retained bool, payload []byte) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if k.c.IsConnectionOpen() {
			t := k.c.Publish(topic, 1, retained, payload)
			select {
			case <-t.Done():
				if t.Error() == nil {
					return nil
				}
				k.log.Warn("mqtt publish failed; trying again", "topic", topic, "error", t.Error())
			case <-time.After(k.ackWait):
				k.log.Warn("mqtt publish not acknowledged; trying again", "topic", topic)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close ends the session for good. A client closed while a redial waited
// would otherwise connect again, with the same client id as the next
// handler's, and the broker would drop one of the two connections.
func (k *conn) close() {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
	k.c.Disconnect(250)
}

// brokerURL turns host:port into tcp://host:port; URLs pass unchanged.
func brokerURL(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("no mqtt broker address")
	}
	for _, p := range []string{"tcp://", "mqtt://", "ssl://", "tls://", "mqtts://", "ws://", "wss://", "unix://"} {
		if len(s) > len(p) && s[:len(p)] == p {
			return s, nil
		}
	}
	return "tcp://" + s, nil
}

// PublishRetained connects to broker, publishes one retained message with
// QoS 1, waits for the acknowledgement and disconnects.
func PublishRetained(ctx context.Context, broker, clientID, topic string, payload []byte) error {
	u, err := brokerURL(broker)
	if err != nil {
		return err
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(u).SetClientID(clientID).SetConnectTimeout(10 * time.Second))
	if err := wait(ctx, c.Connect()); err != nil {
		return fmt.Errorf("mqtt connect %s: %w", u, err)
	}
	defer c.Disconnect(250)
	return wait(ctx, c.Publish(topic, 1, true, payload))
}

func wait(ctx context.Context, t mqtt.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
