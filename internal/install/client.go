package install

import "net/http"

// Client returns an HTTP client with the TLS settings of o (CA file, client
// certificate; proxy variables honoured) and o's extra headers, for fleet
// adapters that fetch their own documents from the same servers as bundles.
func (o HTTPOptions) Client() (*http.Client, http.Header, error) { return httpClient(o) }
