{
 "algorithm": "ed25519",
 "key_id": "aefcdcb853af6930",
 "schema": "edge-model-release-signature/1",
 "signature": "woCoEuyrPjEovaCsEnbHzD6Y+zZKtsTIhQCS0uuZSp25MKNnZAuSzjy3GM05U+jlitO3/NLipfa+w49RV1gxAA=="
}
