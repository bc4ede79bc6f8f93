// Package leadertest provides a Lease API for tests of leader election:
// client-go's fake clientset, made to refuse stale updates as the API
// server does, and per-instance clients that can be cut off, as a killed
// process or a network partition would be.
package leadertest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	k8stesting "k8s.io/client-go/testing"
)

// API is an in-memory Lease API shared by the instances of a test.
type API struct {
	// Clientset is the fake clientset that holds the leases.
	Clientset *fake.Clientset

	mu      sync.Mutex
	version int
}

var leases = coordinationv1.SchemeGroupVersion.WithResource("leases")

// New returns an empty API. Unlike the bare fake clientset, it keeps a
// resourceVersion on every lease and answers an update that carries a
// stale one with a conflict, so that two instances cannot both win a
// lease, just as against a real API server.
func New() *API {
	a := &API{Clientset: fake.NewClientset()}
	a.Clientset.PrependReactor("create", "leases", func(act k8stesting.Action) (bool, runtime.Object, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		l := act.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		l.ResourceVersion = a.nextVersion()
		if err := a.Clientset.Tracker().Create(leases, l, act.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, l.DeepCopy(), nil
	})
	a.Clientset.PrependReactor("update", "leases", func(act k8stesting.Action) (bool, runtime.Object, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		l := act.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		cur, err := a.Clientset.Tracker().Get(leases, act.GetNamespace(), l.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(leases.GroupResource(), l.Name,
				errors.New("the object has been modified; please apply your changes to the latest version and try again"))
		}
		l.ResourceVersion = a.nextVersion()
		if err := a.Clientset.Tracker().Update(leases, l, act.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, l.DeepCopy(), nil
	})
	return a
}

func (a *API) nextVersion() string {
	a.version++
	return strconv.Itoa(a.version)
}

// Lease returns the lease, or nil when there is none.
func (a *API) Lease(namespace, name string) *coordinationv1.Lease {
	l, err := a.Clientset.CoordinationV1().Leases(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return l
}

// Holder returns the lease's holder identity ("" for none or no lease).
func (a *API) Holder(namespace, name string) string {
	l := a.Lease(namespace, name)
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// Client returns a client of the API for one instance.
func (a *API) Client() *Client {
	return &Client{api: a.Clientset.CoordinationV1()}
}

// Client is one instance's view of the API; Cut makes every later call
// fail, as for a process killed with SIGKILL (it renews nothing and
// releases nothing) or cut off from the API server.
type Client struct {
	api coordinationv1client.LeasesGetter
	cut atomic.Bool
}

// ErrCut is the error of every call after Cut.
var ErrCut = errors.New("leadertest: connection to the API server cut")

// Cut makes every later call fail with ErrCut.
func (c *Client) Cut() { c.cut.Store(true) }

// Restore undoes Cut.
func (c *Client) Restore() { c.cut.Store(false) }

// Leases implements coordinationv1client.LeasesGetter.
func (c *Client) Leases(namespace string) coordinationv1client.LeaseInterface {
	return &leaseClient{LeaseInterface: c.api.Leases(namespace), c: c}
}

// leaseClient fails the calls leader election makes once its Client is
// cut.
type leaseClient struct {
	coordinationv1client.LeaseInterface
	c *Client
}

func (l *leaseClient) Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error) {
	if l.c.cut.Load() {
		return nil, ErrCut
	}
	return l.LeaseInterface.Get(ctx, name, opts)
}

func (l *leaseClient) Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error) {
	if l.c.cut.Load() {
		return nil, ErrCut
	}
	return l.LeaseInterface.Create(ctx, lease, opts)
}

func (l *leaseClient) Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	if l.c.cut.Load() {
		return nil, ErrCut
	}
	return l.LeaseInterface.Update(ctx, lease, opts)
}
