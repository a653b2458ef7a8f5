module gtpeers

go 1.19
