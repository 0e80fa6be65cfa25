// Package deploy holds no code: it is the home of Sluice's deployment files,
// and its tests check them.
//
//   - docker/*.Dockerfile and build-images.sh: FROM scratch images of the
//     agent (sluice), the mock provider (sluice-mockllm) and the TCP front
//     (sluice-front), built from static binaries on the host, because no
//     base image can be assumed to be pullable.
//   - compose.yaml and compose/: a three-node cluster, two mock regions and
//     the front on Docker Compose.
//   - k8s/: a StatefulSet with its Services, PodDisruptionBudget, Secret and
//     ConfigMap.
//   - local/: the loopback setup `make run` starts.
//   - grafana/ and prometheus/: the dashboard and the scrape configuration.
//
// TestK8sManifests decodes every manifest strictly into the Kubernetes API
// types and checks that the pieces refer to each other correctly;
// TestCompose builds the images, starts the compose cluster and restarts it
// node by node under load.
package deploy
