package node

import "github.com/sluicehq/sluice/admin"

// deploymentStatus adapts the router's deployment status to the admin
// API's type. The two structs have the same fields (the router cannot
// import admin), so each entry converts directly; a field added to only
// one of them stops this from compiling.
func (n *Node) deploymentStatus() []admin.DeploymentState {
	rs := n.router.DeploymentStatus()
	out := make([]admin.DeploymentState, len(rs))
	for i := range rs {
		out[i] = admin.DeploymentState(rs[i])
	}
	return out
}
