package main

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// efiGlobalVariable is the vendor GUID of the UEFI global variables
// (SecureBoot, SetupMode, …) as efivarfs spells it in file names.
const efiGlobalVariable = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// efiVariable is the content of one efivarfs file: a little-endian u32 of
// attributes followed by the variable data.
type efiVariable struct {
	Attributes uint32
	Data       []byte
}

var errShortEFIVar = errors.New("efivar: shorter than the 4-byte attribute header")

func parseEFIVariable(b []byte) (efiVariable, error) {
	if len(b) < 4 {
		return efiVariable{}, fmt.Errorf("%w (%d bytes)", errShortEFIVar, len(b))
	}
	return efiVariable{Attributes: binary.LittleEndian.Uint32(b), Data: b[4:]}, nil
}

// boolValue interprets a one-byte UEFI boolean variable (SecureBoot,
// SetupMode): 1 is true, 0 is false, anything else is an error.
func (v efiVariable) boolValue() (bool, error) {
	if len(v.Data) != 1 {
		return false, fmt.Errorf("efivar: want 1 data byte, have %d", len(v.Data))
	}
	switch v.Data[0] {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("efivar: boolean value %#x", v.Data[0])
}
