module certgate.test/e2eclients

go 1.19
