//go:build !linux

package relay

import (
	"errors"
	"net"
)

// dialledHere cannot tell who dialled c outside Linux: the relay then takes
// the first connection, as it always did.
func dialledHere(net.Conn) (bool, error) {
	return false, errors.New("peer process unknown on this system")
}
