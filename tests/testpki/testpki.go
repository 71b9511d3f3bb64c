// Package testpki makes a throwaway CA and leaf certificates for tests, so
// TLS through the supervisor is exercised with real handshakes.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

var (
	once  sync.Once
	theCA *ca
	caErr error
)

func getCA(t testing.TB) *ca {
	t.Helper()
	once.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			caErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "forge-supervisor test CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IsCA:                  true,
			KeyUsage:              x509.KeyUsageCertSign,
			BasicConstraintsValid: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			caErr = err
			return
		}
		cert, _ := x509.ParseCertificate(der)
		theCA = &ca{cert: cert, key: key, der: der}
	})
	if caErr != nil {
		t.Fatalf("testpki: %v", caErr)
	}
	return theCA
}

// Cert returns a leaf certificate for names (DNS names or IP literals)
// signed by the test CA.
func Cert(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	c := getCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Pool returns a cert pool trusting the test CA.
func Pool(t testing.TB) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(getCA(t).cert)
	return p
}

// WriteFiles writes the CA (ca.pem) and a leaf for names (cert.pem,
// key.pem) into dir, world-readable, for servers and clients run as
// commands (openssl, curl --cacert).
func WriteFiles(t testing.TB, dir string, names ...string) (caPath, certPath, keyPath string) {
	t.Helper()
	leaf := Cert(t, names...)
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", getCA(t).der),
		write("cert.pem", "CERTIFICATE", leaf.Certificate[0]),
		write("key.pem", "PRIVATE KEY", keyDER)
}
