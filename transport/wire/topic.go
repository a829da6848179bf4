package wire

import "strings"

// Topic suffixes, after {p}/{d}/.
const (
	SuffixUp           = "up"
	SuffixAck          = "ack"
	SuffixState        = "state"
	SuffixConfig       = "config"
	SuffixConfigStatus = "config/status"
	SuffixCmd          = "cmd"
)

// UpTopic is {p}/{d}/up, where the agent publishes batches.
func UpTopic(prefix, device string) string { return topic(prefix, device, SuffixUp) }

// AckTopic is {p}/{d}/ack, where the sink publishes acks.
func AckTopic(prefix, device string) string { return topic(prefix, device, SuffixAck) }

// StateTopic is {p}/{d}/state, where the agent publishes its state (retained).
func StateTopic(prefix, device string) string { return topic(prefix, device, SuffixState) }

// ConfigTopic is {p}/{d}/config, the device's remote config (retained).
func ConfigTopic(prefix, device string) string { return topic(prefix, device, SuffixConfig) }

// FleetConfigTopic is {p}/_fleet/config, the fleet's remote config (retained).
func FleetConfigTopic(prefix string) string { return topic(prefix, FleetID, SuffixConfig) }

// ConfigStatusTopic is {p}/{d}/config/status (retained).
func ConfigStatusTopic(prefix, device string) string {
	return topic(prefix, device, SuffixConfigStatus)
}

// CmdTopic is {p}/{d}/cmd, where commands to the device are published.
func CmdTopic(prefix, device string) string { return topic(prefix, device, SuffixCmd) }

// TopicFilter is the subscription filter {p}/+/{suffix}, for every device
// (the sink subscribes to TopicFilter(p, SuffixUp)). The "+" also matches
// "_fleet"; DeviceFromTopic refuses it.
func TopicFilter(prefix, suffix string) string { return topic(prefix, "+", suffix) }

// SharedFilter is filter as an MQTT 5 shared subscription of group:
// $share/{group}/{filter}.
func SharedFilter(group, filter string) string { return "$share/" + group + "/" + filter }

func topic(prefix, device, suffix string) string {
	return prefix + "/" + device + "/" + suffix
}

// DeviceFromTopic returns the device id {d} of topic {prefix}/{d}/{suffix}.
// It returns an error matching ErrTopic when the topic has another form or
// {d} is not a valid device id (the fleet's "_fleet" is not).
func DeviceFromTopic(prefix, topic, suffix string) (string, error) {
	rest, ok := strings.CutPrefix(topic, prefix+"/")
	if ok {
		rest, ok = strings.CutSuffix(rest, "/"+suffix)
	}
	if !ok || !ValidDeviceID(rest) {
		return "", &FieldError{Message: "topic", Reason: quote(topic) + " is not " + quote(prefix+"/{device}/"+suffix), Err: ErrTopic}
	}
	return rest, nil
}

// ValidTopicPrefix reports whether p can be a topic_prefix: not empty, at
// most 128 bytes of valid UTF-8, no MQTT wildcard ("+", "#"), no NUL, not
// starting with "$" (reserved by brokers) and no empty level.
func ValidTopicPrefix(p string) bool {
	if p == "" || !validText(p, 128) || p[0] == '$' || strings.ContainsAny(p, "+#\x00") {
		return false
	}
	for level := range strings.SplitSeq(p, "/") {
		if level == "" {
			return false
		}
	}
	return true
}
