package install

import (
	"net/http"

	"github.com/tandem-ota/tandem/internal/fetch"
)

// Client returns an HTTP client with the TLS settings of o (CA file, client
// certificate; proxy variables honoured) and o's extra headers, for fleet
// adapters that fetch their own documents from the same servers as bundles.
// A redirect to another host (fetch.CheckRedirect) goes without the headers.
func (o HTTPOptions) Client() (*http.Client, http.Header, error) {
	c, h, err := httpClient(o)
	if err != nil {
		return nil, nil, err
	}
	c.CheckRedirect = fetch.CheckRedirect(h, nil)
	return c, h, nil
}
