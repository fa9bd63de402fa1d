module mlkube.io/devcluster/pause

go 1.22
