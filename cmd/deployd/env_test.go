package main

func noEnv(string) string { return "" }

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// minimal is the smallest valid service section of a configuration.
const minimal = `
services:
  web:
    image: demoapp
    port: 8000
`
