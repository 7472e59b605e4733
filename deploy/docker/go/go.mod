module certgate-demo-go

go 1.19
