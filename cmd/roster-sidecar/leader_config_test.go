package main

import (
	"maps"
	"strings"
	"testing"
	"time"
)

func TestLeaderConfig(t *testing.T) {
	c, err := load(t, required, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Leader.Enabled() || c.Leader.LeaseDuration != 8*time.Second || c.Leader.RenewDeadline != 4*time.Second || c.Leader.RetryPeriod != time.Second {
		t.Fatalf("defaults: %+v", c.Leader)
	}

	env := maps.Clone(required)
	env["ROSTER_SIDECAR_LEADER_LEASE_NAME"] = "roster-sidecar"
	env["ROSTER_SIDECAR_LEADER_LEASE_NAMESPACE"] = "chat"
	env["ROSTER_SIDECAR_LEADER_IDENTITY"] = "roster-sidecar-7d9f-abcde"
	env["ROSTER_SIDECAR_LEADER_ADVERTISE_URL"] = "http://10.1.2.3:5380"
	c, err = load(t, env, "", "--leader.lease_duration=15s", "--leader.renew_deadline=10s", "--leader.retry_period=2s")
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Leader; !l.Enabled() || l.LeaseName != "roster-sidecar" || l.Namespace != "chat" || l.Identity != "roster-sidecar-7d9f-abcde" ||
		l.AdvertiseURL != "http://10.1.2.3:5380" ||
		l.LeaseDuration != 15*time.Second || l.RenewDeadline != 10*time.Second || l.RetryPeriod != 2*time.Second {
		t.Fatalf("leader settings: %+v", l)
	}

	for _, tc := range []struct {
		args []string
		key  string
	}{
		{[]string{"--leader.lease_duration=1500ms"}, "leader.lease_duration"},
		{[]string{"--leader.lease_duration=0s"}, "leader.lease_duration"},
		{[]string{"--leader.renew_deadline=8s"}, "leader.renew_deadline"},
		{[]string{"--leader.renew_deadline=-1s"}, "leader.renew_deadline"},
		{[]string{"--leader.retry_period=4s"}, "leader.retry_period"},
		{[]string{"--leader.retry_period=0s"}, "leader.retry_period"},
		{[]string{"--leader.advertise_url=10.1.2.3:5380"}, "leader.advertise_url"},
		{[]string{"--leader.advertise_url=http://10.1.2.3:5380/api"}, "leader.advertise_url"},
		{[]string{"--leader.advertise_url=http://10.1.2.3:5380", "--leader.identity=pod a"}, "leader.identity"},
	} {
		_, err := load(t, required, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%v: got %v, want an error naming %s", tc.args, err, tc.key)
		}
	}
}
