package prefect

//go:generate go tool genqlient genqlient.yaml
